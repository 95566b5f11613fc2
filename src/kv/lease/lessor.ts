import { Buffer } from 'node:buffer';
import { assert, assertUint } from '../../util/assert.js';
import type { LeaseAttachments, LeaseId } from '../types.js';
import { DeadlineHeap } from './deadline-heap.js';
import { LeaseError, LeaseErrorCode } from './errors.js';
import { checkLeaseId, mix64 } from './lease-id.js';
import {
  LEASE_CHECKPOINT_BATCH_MAX,
  LEASE_CHECKPOINT_INTERVAL_MS_DEFAULT,
  LEASE_EXPIRED_RETRY_MS,
  LEASE_ID_MAX,
  LEASE_PROMOTE_EXPIRIES_PER_SECOND_TARGET,
  LEASE_REVOKE_PER_SECOND_MAX,
  LEASE_TTL_SECONDS_MAX,
} from './limits.js';

const MS_PER_SECOND = 1000;

export interface LessorOptions {
  /**
   * Shorter TTLs are raised to this. etcd uses ceil(1.5 x election timeout): a lease must
   * outlive the election that may follow a leader crash, or it expires while nobody can renew it.
   */
  readonly minTtlSeconds: number;
  /** How often the primary persists remaining TTLs through the log (etcd: 5 min). */
  readonly checkpointIntervalMs: number;
  /** etcd's --experimental-enable-lease-checkpoint. */
  readonly checkpointingEnabled: boolean;
  /** An expired lease still present after this long is offered for revoke again. */
  readonly expiredRetryMs: number;
}

export const LESSOR_OPTIONS_DEFAULT: LessorOptions = Object.freeze({
  minTtlSeconds: 2,
  checkpointIntervalMs: LEASE_CHECKPOINT_INTERVAL_MS_DEFAULT,
  checkpointingEnabled: true,
  expiredRetryMs: LEASE_EXPIRED_RETRY_MS,
});

/** etcd's LeaseCheckpoint: the remaining TTL the primary observed, to replicate through the log. */
export interface LeaseCheckpoint {
  readonly id: LeaseId;
  /** 0 clears a previous checkpoint (a keep-alive restarted the full TTL). */
  readonly remainingTtlSeconds: number;
}

export interface LeaseGrant {
  readonly id: LeaseId;
  /** The TTL in force: the requested one raised to the minimum. */
  readonly ttlSeconds: number;
}

export interface LeaseKeepAlive {
  /** The granted TTL, as etcd's LeaseKeepAliveResponse.TTL. */
  readonly ttlSeconds: number;
  /**
   * A checkpoint to propose, or null. Non-null when the lease carried a checkpointed remaining
   * TTL: it must be cleared on every member, or a later leader would restore the stale value.
   */
  readonly checkpoint: LeaseCheckpoint | null;
}

export interface LeaseTimeToLive {
  readonly id: LeaseId;
  readonly grantedTtlSeconds: number;
  /**
   * Seconds left (floored, never negative) on the primary. Elsewhere the lessor has no deadline
   * and reports the last checkpointed remaining TTL, else the granted TTL: serve TimeToLive from
   * the leader, as etcd does.
   */
  readonly remainingTtlSeconds: number;
  /** Attached keys in byte order, or empty unless asked for. */
  readonly keys: readonly Uint8Array[];
}

/** Plain data for the state-machine snapshot. Ids are decimal strings to stay codec-neutral. */
export interface LessorSnapshot {
  readonly version: 1;
  /** How many ids grant(0) has generated; part of replicated state so members agree on ids. */
  readonly generatedIds: number;
  readonly leases: readonly LeaseSnapshot[];
}

export interface LeaseSnapshot {
  readonly id: string;
  readonly ttlSeconds: number;
  readonly remainingTtlSeconds: number;
  readonly keys: readonly Uint8Array[];
}

interface Lease {
  readonly id: LeaseId;
  readonly ttlSeconds: number;
  /** Last checkpointed remaining TTL; 0 = none. Invariant: 0 <= remainingTtlSeconds. */
  remainingTtlSeconds: number;
  /** Deadline on the primary; Infinity on any other member (etcd's "forever"). */
  expiryMs: number;
  /** Attached keys by their latin1 image (one char per byte, so string order = byte order). */
  readonly keys: Map<string, Uint8Array>;
}

/**
 * The lease table: which leases exist, their TTLs and deadlines, and the keys attached to each.
 *
 * Pure and deterministic: no timers and no clock; time comes in as `nowMs`. The replicated part
 * (grant, revoke, attach, detach, applyCheckpoint, the id counter) changes only when a log
 * entry is applied, identically on every member. Deadlines exist only on the *primary* (the
 * leader's lessor): it alone accepts keep-alives and decides expiry, by proposing revokes the
 * member gets from `expired()`. Followers hold every lease "forever" until promoted, so a lease
 * never disappears without a revoke in the log. Modelled on etcd's server/lease/lessor.go.
 */
export class Lessor implements LeaseAttachments {
  private readonly options: LessorOptions;
  private readonly leaseById = new Map<LeaseId, Lease>();
  /** Primary only: when each lease expires. Empty otherwise. */
  private readonly expiryHeap = new DeadlineHeap();
  /** Primary only: when each long lease is next checkpointed. Empty otherwise. */
  private readonly checkpointHeap = new DeadlineHeap();
  private primary = false;
  private generatedIds = 0;

  constructor(options: Partial<LessorOptions> = {}) {
    this.options = { ...LESSOR_OPTIONS_DEFAULT, ...options };
    assertUint(this.options.minTtlSeconds, 'minTtlSeconds');
    assert(this.options.minTtlSeconds <= LEASE_TTL_SECONDS_MAX, 'minTtlSeconds above the max');
    assert(this.options.checkpointIntervalMs > 0, 'checkpointIntervalMs must be positive');
    assert(this.options.expiredRetryMs > 0, 'expiredRetryMs must be positive');
  }

  static fromSnapshot(snapshot: LessorSnapshot, options: Partial<LessorOptions> = {}): Lessor {
    const lessor = new Lessor(options);
    lessor.restore(snapshot);
    return lessor;
  }

  isPrimary(): boolean {
    return this.primary;
  }

  get size(): number {
    return this.leaseById.size;
  }

  // -------------------------------------------------------------------------------------------
  // Replicated operations: called when a log entry is applied, on every member.

  /**
   * Grants a lease. `id` 0 generates one deterministically from replicated state (the proposer
   * normally picks the id first, with LeaseIdGenerator, as etcd does). `nowMs` starts the
   * deadline on the primary and is ignored elsewhere.
   */
  grant(id: LeaseId, ttlSeconds: number, nowMs: number): LeaseGrant {
    assertUint(ttlSeconds, 'ttlSeconds');
    if (id === 0n) id = this.generateId();
    checkLeaseId(id);
    if (ttlSeconds > LEASE_TTL_SECONDS_MAX) throw new LeaseError(LeaseErrorCode.TtlTooLarge, id);
    if (this.leaseById.has(id)) throw new LeaseError(LeaseErrorCode.Exists, id);

    const lease: Lease = {
      id,
      ttlSeconds: Math.max(ttlSeconds, this.options.minTtlSeconds),
      remainingTtlSeconds: 0,
      expiryMs: Number.POSITIVE_INFINITY,
      keys: new Map(),
    };
    this.leaseById.set(id, lease);
    if (this.primary) {
      this.refresh(lease, nowMs, 0);
      this.scheduleCheckpoint(lease, nowMs);
    }
    return { id, ttlSeconds: lease.ttlSeconds };
  }

  /**
   * Removes a lease and returns its keys in byte order. The state machine deletes them all in
   * ONE revision (the store's detach calls that follow are no-ops). Throws LEASE_NOT_FOUND.
   */
  revoke(id: LeaseId): Uint8Array[] {
    const lease = this.mustGet(id);
    this.leaseById.delete(id);
    this.expiryHeap.delete(id);
    this.checkpointHeap.delete(id);
    return sortedKeys(lease);
  }

  /**
   * Records a checkpointed remaining TTL. Deadlines are untouched: promote() applies it when a
   * member next becomes primary (etcd). Unknown ids are ignored: the lease may have been revoked
   * between the proposal and its apply.
   */
  applyCheckpoint(checkpoint: LeaseCheckpoint, nowMs: number): void {
    assertUint(checkpoint.remainingTtlSeconds, 'remainingTtlSeconds');
    const lease = this.leaseById.get(checkpoint.id);
    if (lease === undefined) return;
    lease.remainingTtlSeconds = checkpoint.remainingTtlSeconds;
    if (this.primary) this.scheduleCheckpoint(lease, nowMs);
  }

  exists(id: LeaseId): boolean {
    return this.leaseById.has(id);
  }

  /** Attaches `key` to lease `id` (idempotent). Throws LEASE_NOT_FOUND. */
  attach(id: LeaseId, key: Uint8Array): void {
    const lease = this.mustGet(id);
    const image = keyImage(key);
    if (!lease.keys.has(image)) lease.keys.set(image, Uint8Array.from(key));
  }

  /**
   * Detaches `key` from lease `id`. A no-op when either is unknown: revoke() removes the lease
   * before the store deletes its keys, and the store detaches each deleted key.
   */
  detach(id: LeaseId, key: Uint8Array): void {
    this.leaseById.get(id)?.keys.delete(keyImage(key));
  }

  // -------------------------------------------------------------------------------------------
  // Reads.

  /** Lease ids in ascending order. */
  leases(): LeaseId[] {
    return [...this.leaseById.keys()].sort(compareBigint);
  }

  timeToLive(id: LeaseId, nowMs: number, withKeys: boolean): LeaseTimeToLive {
    const lease = this.mustGet(id);
    return {
      id,
      grantedTtlSeconds: lease.ttlSeconds,
      remainingTtlSeconds: this.remainingSeconds(lease, nowMs),
      keys: withKeys ? sortedKeys(lease) : [],
    };
  }

  // -------------------------------------------------------------------------------------------
  // Primary only: local decisions of the leader's lessor, never applied from the log.

  /**
   * Restarts a lease's TTL. Only the primary accepts keep-alives (LEASE_NOT_PRIMARY elsewhere:
   * the API forwards them to the leader). LEASE_EXPIRED when the deadline passed: the revoke is
   * on its way, and a renewal now would race it.
   */
  keepAlive(id: LeaseId, nowMs: number): LeaseKeepAlive {
    if (!this.primary) throw new LeaseError(LeaseErrorCode.NotPrimary, id);
    const lease = this.mustGet(id);
    if (nowMs >= lease.expiryMs) throw new LeaseError(LeaseErrorCode.Expired, id);
    let checkpoint: LeaseCheckpoint | null = null;
    if (this.options.checkpointingEnabled && lease.remainingTtlSeconds > 0) {
      // etcd proposes the clearing checkpoint and waits for it; clearing locally now gives the
      // same deadline, and the proposal clears it on the other members.
      checkpoint = { id, remainingTtlSeconds: 0 };
      lease.remainingTtlSeconds = 0;
    }
    this.refresh(lease, nowMs, 0);
    return { ttlSeconds: lease.ttlSeconds, checkpoint };
  }

  /**
   * Up to `limit` leases whose deadline passed, earliest first, for the member to propose as
   * revokes. Each returned id is offered again after `expiredRetryMs` if still not revoked (the
   * proposal may be lost). Always empty on a non-primary lessor.
   */
  expired(nowMs: number, limit: number = LEASE_REVOKE_PER_SECOND_MAX / 2): LeaseId[] {
    assert(limit > 0, 'limit must be positive');
    const ids: LeaseId[] = [];
    while (ids.length < limit) {
      const top = this.expiryHeap.peek();
      if (top === null || top.deadlineMs > nowMs) break;
      const lease = this.leaseById.get(top.id);
      assert(lease !== undefined, 'expiry heap holds only live leases');
      this.expiryHeap.set(top.id, nowMs + this.options.expiredRetryMs);
      if (nowMs >= lease.expiryMs) ids.push(top.id);
    }
    return ids;
  }

  /**
   * Checkpoints that are due, for the member to propose (etcd's findDueScheduledCheckpoints).
   * A lease is checkpointed only while it has more than one interval left and has used part of
   * its TTL, so short leases and freshly renewed ones cost no log entries.
   */
  checkpoints(nowMs: number, limit: number = LEASE_CHECKPOINT_BATCH_MAX): LeaseCheckpoint[] {
    assert(limit > 0, 'limit must be positive');
    const due: LeaseCheckpoint[] = [];
    while (due.length < limit) {
      const top = this.checkpointHeap.peek();
      if (top === null || top.deadlineMs > nowMs) break;
      this.checkpointHeap.delete(top.id);
      const lease = this.leaseById.get(top.id);
      assert(lease !== undefined, 'checkpoint heap holds only live leases');
      if (nowMs >= lease.expiryMs) continue;
      const remainingTtlSeconds = Math.ceil((lease.expiryMs - nowMs) / MS_PER_SECOND);
      if (remainingTtlSeconds >= lease.ttlSeconds) continue;
      due.push({ id: lease.id, remainingTtlSeconds });
    }
    return due;
  }

  /**
   * This member became leader: start every lease's deadline at now + (checkpointed remaining
   * TTL, else TTL) + `extendMs` (etcd passes the election timeout: clients had no leader to
   * renew with meanwhile). Then spread expiries that would pile up in the same second.
   */
  promote(nowMs: number, extendMs: number): void {
    assert(!this.primary, 'promote() on a primary lessor');
    assertUint(extendMs, 'extendMs');
    this.primary = true;
    for (const lease of this.leaseById.values()) {
      this.refresh(lease, nowMs, extendMs);
      this.scheduleCheckpoint(lease, nowMs);
    }
    if (this.leaseById.size >= LEASE_REVOKE_PER_SECOND_MAX) this.spreadExpiries(nowMs, extendMs);
  }

  /** This member lost leadership: deadlines are the new leader's business now. */
  demote(): void {
    this.primary = false;
    for (const lease of this.leaseById.values()) lease.expiryMs = Number.POSITIVE_INFINITY;
    this.expiryHeap.clear();
    this.checkpointHeap.clear();
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots.

  toSnapshot(): LessorSnapshot {
    const leases = this.leases().map((id): LeaseSnapshot => {
      const lease = this.leaseById.get(id)!;
      return {
        id: id.toString(),
        ttlSeconds: lease.ttlSeconds,
        remainingTtlSeconds: lease.remainingTtlSeconds,
        keys: sortedKeys(lease),
      };
    });
    return { version: 1, generatedIds: this.generatedIds, leases };
  }

  /**
   * Replaces the whole table in place (the store keeps its reference to this lessor). Never on
   * a primary: a leader sends snapshots, it does not install them; promote() after restore.
   */
  restore(snapshot: LessorSnapshot): void {
    assert(!this.primary, 'restore() on a primary lessor');
    assert(snapshot.version === 1, `unknown lessor snapshot version ${snapshot.version}`);
    assertUint(snapshot.generatedIds, 'generatedIds');
    this.leaseById.clear();
    this.generatedIds = snapshot.generatedIds;
    for (const saved of snapshot.leases) {
      const id = BigInt(saved.id);
      assert(id > 0n && id <= LEASE_ID_MAX && !this.leaseById.has(id), `snapshot lease ${id}`);
      assertUint(saved.ttlSeconds, 'snapshot ttlSeconds');
      assertUint(saved.remainingTtlSeconds, 'snapshot remainingTtlSeconds');
      const keys = new Map<string, Uint8Array>();
      for (const key of saved.keys) keys.set(keyImage(key), Uint8Array.from(key));
      this.leaseById.set(id, {
        id,
        ttlSeconds: saved.ttlSeconds,
        remainingTtlSeconds: saved.remainingTtlSeconds,
        expiryMs: Number.POSITIVE_INFINITY,
        keys,
      });
    }
  }

  // -------------------------------------------------------------------------------------------

  private mustGet(id: LeaseId): Lease {
    const lease = this.leaseById.get(id);
    if (lease === undefined) throw new LeaseError(LeaseErrorCode.NotFound, id);
    return lease;
  }

  private generateId(): LeaseId {
    for (;;) {
      this.generatedIds += 1;
      const id = mix64(BigInt(this.generatedIds)) & LEASE_ID_MAX;
      if (id !== 0n && !this.leaseById.has(id)) return id;
    }
  }

  private remainingSeconds(lease: Lease, nowMs: number): number {
    if (!this.primary) return effectiveTtlSeconds(lease);
    return Math.max(0, Math.floor((lease.expiryMs - nowMs) / MS_PER_SECOND));
  }

  /** etcd's Lease.refresh: deadline = now + extend + (checkpointed remaining, else TTL). */
  private refresh(lease: Lease, nowMs: number, extendMs: number): void {
    assert(this.primary, 'deadlines exist only on the primary');
    lease.expiryMs = nowMs + extendMs + effectiveTtlSeconds(lease) * MS_PER_SECOND;
    this.expiryHeap.set(lease.id, lease.expiryMs);
  }

  private scheduleCheckpoint(lease: Lease, nowMs: number): void {
    if (!this.options.checkpointingEnabled) return;
    const intervalMs = this.options.checkpointIntervalMs;
    if (effectiveTtlSeconds(lease) * MS_PER_SECOND > intervalMs) {
      this.checkpointHeap.set(lease.id, nowMs + intervalMs);
    }
  }

  /**
   * etcd's Promote pile-up avoidance: walking leases by deadline, once a one-second window holds
   * more than the target, each further lease is pushed back in proportion to the excess, so
   * revokes arrive at no more than the target rate after a leader change.
   */
  private spreadExpiries(nowMs: number, extendMs: number): void {
    const leases = [...this.leaseById.values()].sort(
      (a, b) => a.expiryMs - b.expiryMs || compareBigint(a.id, b.id),
    );
    const target = LEASE_PROMOTE_EXPIRIES_PER_SECOND_TARGET;
    let baseWindowMs = leases[0]!.expiryMs - nowMs;
    let nextWindowMs = baseWindowMs + MS_PER_SECOND;
    let expires = 0;
    for (const lease of leases) {
      const remainingMs = lease.expiryMs - nowMs;
      if (remainingMs > nextWindowMs) {
        baseWindowMs = remainingMs;
        nextWindowMs = baseWindowMs + MS_PER_SECOND;
        expires = 1;
        continue;
      }
      expires += 1;
      if (expires <= target) continue;
      // A lease already n ms past the window start needs n ms less delay.
      const delayMs = Math.floor((MS_PER_SECOND * expires) / target - (remainingMs - baseWindowMs));
      nextWindowMs = baseWindowMs + delayMs;
      this.refresh(lease, nowMs, delayMs + extendMs);
      this.scheduleCheckpoint(lease, nowMs);
    }
  }
}

function effectiveTtlSeconds(lease: Lease): number {
  return lease.remainingTtlSeconds > 0 ? lease.remainingTtlSeconds : lease.ttlSeconds;
}

function keyImage(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

function sortedKeys(lease: Lease): Uint8Array[] {
  return [...lease.keys.keys()].sort().map((image) => lease.keys.get(image)!);
}

function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
