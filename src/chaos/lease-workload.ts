/**
 * The lease workload: one lease holder that, round after round, grants a lease, attaches keys
 * to it, keeps it alive for a while, then stops and polls until the keys are gone. What it
 * records is what the lease check (checks.ts, checkLeases) needs, per key:
 * - the grant's invocation time (the lease began at or after it) and the TTL in force;
 * - the send time of every keep-alive answered with a positive TTL (each restarted the TTL at or
 *   after it was sent; unanswered ones may have too, which only makes the lease live longer);
 * - the completion time of the first linearizable read that found the key missing.
 *
 * Only keys whose put with the lease was acknowledged are observed: a put of unknown outcome
 * may never have happened, and a key that never existed is "missing" from the start.
 *
 * Lease keys live under their own prefix, apart from the registers: their deletion by expiry is
 * not a register operation, so they stay out of the linearizability history and the watchers.
 */

import { sleep } from '../cli/local-net.js';
import { Prng } from '../util/prng.js';
import type { LeaseObservation } from './checks.js';
import { KvClient, LeaseClient } from './etcd-client.js';

/** The TTL requested (tandem raises shorter ones to its minimum, 2 s by default). */
export const LEASE_TTL_SECONDS = 2;
/** Keys attached to each lease. */
export const LEASE_KEYS_PER_LEASE = 2;
/** Rounds (leases) in one run, besides the deadline. */
export const LEASE_ROUNDS_MAX = 1000;
/** A round keeps its lease alive for a random time up to this many TTLs. */
const LEASE_KEEP_ALIVE_TTLS_MAX = 2;
/** Keep-alives per TTL while the lease is kept alive. */
const LEASE_KEEP_ALIVES_PER_TTL = 3;
/** Between polls for the keys' disappearance. */
const LEASE_POLL_MS = 100;
/** Polls per key per round (a bound besides the deadline). */
const LEASE_POLLS_MAX = 10_000;
/** The lease keys' prefix, apart from the registers' `chaos/k…`. */
export const LEASE_KEY_PREFIX = 'chaos/lease/';

export interface LeaseWorkloadContext {
  readonly endpoints: readonly string[];
  readonly opTimeoutMs: number;
  /** The recorder's clock: observations share the history's time axis. */
  nowMs(): number;
  /** No new round starts at or after this time. */
  readonly stopAtMs: number;
  /** Polling for a round's keys ends at this time (the keys then count as never missing). */
  readonly pollUntilMs: number;
  readonly signal: AbortSignal;
}

/** What one lease holder did: observations for the check, and counts for the report. */
export interface LeaseWorkloadRecord {
  readonly observations: LeaseObservation[];
  grantsInvoked: number;
  grantsFailed: number;
  putsUnacknowledged: number;
  keepAlivesSent: number;
  keepAlivesAcknowledged: number;
}

export function newLeaseRecord(): LeaseWorkloadRecord {
  return {
    observations: [],
    grantsInvoked: 0,
    grantsFailed: 0,
    putsUnacknowledged: 0,
    keepAlivesSent: 0,
    keepAlivesAcknowledged: 0,
  };
}

/** Runs lease rounds until `stopAtMs` (or abort), appending to `record`. */
export async function runLeaseHolder(
  ctx: LeaseWorkloadContext,
  seed: number,
  record: LeaseWorkloadRecord,
): Promise<void> {
  const random = new Prng(seed);
  for (let round = 0; round < LEASE_ROUNDS_MAX; round++) {
    if (ctx.signal.aborted || ctx.nowMs() >= ctx.stopAtMs) return;
    const endpoint = random.pick(ctx.endpoints);
    const lease = new LeaseClient(endpoint);
    const kv = new KvClient(endpoint);
    try {
      await runRound(ctx, random, record, round, lease, kv);
    } finally {
      lease.close();
      kv.close();
    }
  }
}

async function runRound(
  ctx: LeaseWorkloadContext,
  random: Prng,
  record: LeaseWorkloadRecord,
  round: number,
  lease: LeaseClient,
  kv: KvClient,
): Promise<void> {
  const grantedMs = ctx.nowMs();
  record.grantsInvoked++;
  let granted: { id: string; ttlSeconds: number };
  try {
    granted = await lease.grant(LEASE_TTL_SECONDS, ctx.opTimeoutMs);
  } catch {
    record.grantsFailed++;
    await sleep(LEASE_POLL_MS, ctx.signal);
    return;
  }
  const ttlMs = granted.ttlSeconds * 1000;
  if (!(ttlMs > 0)) {
    record.grantsFailed++;
    return;
  }
  const keys: string[] = [];
  for (let i = 0; i < LEASE_KEYS_PER_LEASE; i++) {
    const key = `${LEASE_KEY_PREFIX}r${round}-${i}`;
    try {
      await kv.put(key, String(round), ctx.opTimeoutMs, granted.id);
      keys.push(key);
    } catch {
      record.putsUnacknowledged++;
    }
  }
  // Keep alive for a random time, recording the send times of acknowledged keep-alives.
  const keepAliveMs: number[] = [];
  const keepUntilMs = Math.min(
    ctx.stopAtMs,
    ctx.nowMs() + random.int(LEASE_KEEP_ALIVE_TTLS_MAX * ttlMs + 1),
  );
  const intervalMs = Math.floor(ttlMs / LEASE_KEEP_ALIVES_PER_TTL);
  let holder = lease;
  const extra: LeaseClient[] = [];
  try {
    for (let n = 0; n < LEASE_POLLS_MAX && ctx.nowMs() < keepUntilMs; n++) {
      if (ctx.signal.aborted) return;
      const sentMs = ctx.nowMs();
      record.keepAlivesSent++;
      try {
        const ttlSeconds = await holder.keepAlive(granted.id, ctx.opTimeoutMs);
        if (ttlSeconds <= 0) break; // gone: nothing more to refresh
        keepAliveMs.push(sentMs);
        record.keepAlivesAcknowledged++;
      } catch {
        holder = new LeaseClient(random.pick(ctx.endpoints));
        extra.push(holder);
      }
      await sleep(intervalMs, ctx.signal);
    }
  } finally {
    for (const c of extra) c.close();
  }
  // Stopped keeping it alive: poll until each key is gone.
  for (const key of keys) {
    const missingObservedMs = await pollMissing(ctx, random, kv, key);
    record.observations.push({
      key,
      leaseId: granted.id,
      ttlMs,
      grantedMs,
      keepAliveMs,
      ...(missingObservedMs !== undefined && { missingObservedMs }),
    });
  }
}

/** The completion time of the first linearizable read that found `key` missing, if any. */
async function pollMissing(
  ctx: LeaseWorkloadContext,
  random: Prng,
  kv: KvClient,
  key: string,
): Promise<number | undefined> {
  let client = kv;
  try {
    for (let n = 0; n < LEASE_POLLS_MAX && ctx.nowMs() < ctx.pollUntilMs; n++) {
      if (ctx.signal.aborted) return undefined;
      try {
        const r = await client.get(key, ctx.opTimeoutMs);
        if (r.value === null) return ctx.nowMs();
      } catch {
        if (client !== kv) client.close();
        client = new KvClient(random.pick(ctx.endpoints));
      }
      await sleep(LEASE_POLL_MS, ctx.signal);
    }
    return undefined;
  } finally {
    if (client !== kv) client.close();
  }
}
