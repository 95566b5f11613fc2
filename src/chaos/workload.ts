/**
 * The chaos workload: clients that read, write and compare-and-set registers (one per key) and
 * record every operation, and one watcher per key that records every event it is sent.
 *
 * Outcomes, and why (history.ts defines them):
 * - a read that errs is `fail`: a read has no effect, so "did not happen" is always true;
 * - a write or cas that errs is `info` (unknown outcome: it may have been proposed and
 *   committed), except when it certainly never reached a member's log: the client had no
 *   connection to send it on, or the member answered "no leader", which tandem only gives for a
 *   proposal it never handed to Raft (server/member.ts). If tandem ever claims "no leader" for a
 *   write that did take effect, the linearizability check sees the effect of a failed write;
 * - a cas whose compare fails is `fail` (the txn ran and changed nothing).
 *
 * Every written value is unique in the run (a counter), so a read names the write it saw.
 * A client that errs reconnects to a random member; a client whose operation ended `info`
 * continues as a new process (the recorder hands out the id).
 */

import { sleep } from '../cli/local-net.js';
import { Prng } from '../util/prng.js';
import type { WatchEvent, WatcherLog } from './checks.js';
import {
  GRPC_UNAVAILABLE,
  type GrpcError,
  KeyWatch,
  KvClient,
  type WatchEventPb,
} from './etcd-client.js';
import type { OpFunction, Value } from './history.js';
import type { HistoryRecorder, Outcome } from './recorder.js';

/** A client waits up to this long between operations (spreads load, varies interleavings). */
export const CLIENT_THINK_MS_MAX = 10;
/** Operations per client in one run (a bound on the loop besides its deadline). */
export const CLIENT_OPS_MAX = 1_000_000;
/** Watch streams a watcher opens in one run, reconnections included. */
export const WATCH_REOPENS_MAX = 10_000;
/** A watcher waits this long before reopening a stream that ended. */
const WATCH_REOPEN_DELAY_MS = 200;

/** The share of each kind of operation (the rest are reads). */
export const WRITE_SHARE = 0.3;
export const CAS_SHARE = 0.2;

/** Whether a failed operation certainly had no effect (`fail`) or may have had one (`info`). */
export function classifyError(f: OpFunction, error: GrpcError): Exclude<Outcome, 'ok'> {
  if (f === 'read') return 'fail';
  const details = error.details ?? error.message ?? '';
  if (error.code === GRPC_UNAVAILABLE) {
    if (details.startsWith('No connection established')) return 'fail';
    if (details === 'etcdserver: no leader') return 'fail';
    // A member that serves no clients (a standby, or one not yet sure of its role) refuses
    // before proposing anything (server.ts refuseIfStandby).
    if (details.startsWith('tandem: member ') && details.includes('serves no client traffic')) {
      return 'fail';
    }
  }
  return 'info';
}

function describeError(error: GrpcError): string {
  return error.code === undefined
    ? error.message
    : `${error.code} ${error.details ?? error.message}`;
}

export interface WorkloadContext {
  readonly recorder: HistoryRecorder;
  readonly endpoints: readonly string[];
  readonly keys: readonly string[];
  readonly opTimeoutMs: number;
  /** Clients stop invoking at this recorder time. */
  readonly stopAtMs: number;
  readonly signal: AbortSignal;
  /** Unique written values. */
  nextValue(): number;
  /** The last value seen per key (cas expects it: keeps the success rate useful). */
  readonly lastSeen: Map<string, Value>;
}

export function newWorkloadContext(
  base: Omit<WorkloadContext, 'nextValue' | 'lastSeen'>,
): WorkloadContext {
  let value = 0;
  return { ...base, nextValue: () => ++value, lastSeen: new Map() };
}

/** One client: a closed loop of operations until `stopAtMs`, the history full, or abort. */
export async function runClient(ctx: WorkloadContext, seed: number): Promise<void> {
  const random = new Prng(seed);
  const { recorder } = ctx;
  let process = recorder.newProcess();
  let client = new KvClient(random.pick(ctx.endpoints));
  try {
    for (let n = 0; n < CLIENT_OPS_MAX; n++) {
      if (ctx.signal.aborted || recorder.full || recorder.nowMs() >= ctx.stopAtMs) break;
      const key = random.pick(ctx.keys);
      const roll = random.float();
      const f: OpFunction =
        roll < WRITE_SHARE ? 'write' : roll < WRITE_SHARE + CAS_SHARE ? 'cas' : 'read';
      let outcome: Outcome;
      if (f === 'read') {
        const op = recorder.invoke(process, 'read', key, null);
        try {
          const r = await client.get(key, ctx.opTimeoutMs);
          const value = r.value === null ? null : Number(r.value);
          ctx.lastSeen.set(key, value);
          outcome = 'ok';
          process = recorder.complete(op, 'ok', { readValue: value });
        } catch (error) {
          outcome = classifyError('read', error as GrpcError);
          process = recorder.complete(op, outcome, { error: describeError(error as GrpcError) });
        }
      } else if (f === 'write') {
        const value = ctx.nextValue();
        const op = recorder.invoke(process, 'write', key, value);
        try {
          const r = await client.put(key, String(value), ctx.opTimeoutMs);
          ctx.lastSeen.set(key, value);
          outcome = 'ok';
          process = recorder.complete(op, 'ok', { revision: r.revision });
        } catch (error) {
          outcome = classifyError('write', error as GrpcError);
          process = recorder.complete(op, outcome, { error: describeError(error as GrpcError) });
        }
      } else {
        const expected = ctx.lastSeen.get(key) ?? null;
        const next = ctx.nextValue();
        const op = recorder.invoke(process, 'cas', key, [expected, next]);
        try {
          const r = await client.cas(
            key,
            expected === null ? null : String(expected),
            String(next),
            ctx.opTimeoutMs,
          );
          outcome = r.succeeded ? 'ok' : 'fail';
          if (r.succeeded) ctx.lastSeen.set(key, next);
          process = recorder.complete(
            op,
            outcome,
            r.succeeded ? { revision: r.revision } : { error: 'compare failed' },
          );
        } catch (error) {
          outcome = classifyError('cas', error as GrpcError);
          process = recorder.complete(op, outcome, { error: describeError(error as GrpcError) });
        }
      }
      // An error (not a failed compare) may mean the member is gone: go elsewhere.
      if (outcome === 'info' || (outcome === 'fail' && f !== 'cas') || random.chance(0.001)) {
        client.close();
        client = new KvClient(random.pick(ctx.endpoints));
      }
      const thinkMs = random.int(CLIENT_THINK_MS_MAX + 1);
      if (thinkMs > 0) await sleep(thinkMs, ctx.signal);
    }
  } finally {
    client.close();
  }
}

/**
 * One logical watcher of one key, from revision 1, across reconnections: when a stream ends it
 * reopens on a random member from the revision after the last event it saw.
 */
export class KeyWatcher {
  readonly events: WatchEvent[] = [];
  private lastRevision = 0;
  private progressRevision = 0;
  private watch: KeyWatch | null = null;
  private stopped = false;
  private reopens = 0;
  private readonly random: Prng;
  streamsOpened = 0;

  constructor(
    readonly key: string,
    private readonly endpoints: readonly string[],
    seed: number,
  ) {
    this.random = new Prng(seed);
  }

  start(): void {
    this.open();
  }

  private open(): void {
    if (this.stopped || this.reopens >= WATCH_REOPENS_MAX) return;
    this.reopens++;
    this.streamsOpened++;
    const watch = new KeyWatch(this.random.pick(this.endpoints), this.key, this.lastRevision + 1, {
      onEvents: (events: readonly WatchEventPb[]) => {
        if (this.watch !== watch) return;
        for (const e of events) {
          this.events.push({
            revision: e.revision,
            key: e.key,
            type: e.type,
            ...(e.type === 'put' && { value: Number(e.value) }),
          });
          this.lastRevision = Math.max(this.lastRevision, e.revision);
        }
      },
      onProgress: (headerRevision: number) => {
        if (this.watch !== watch) return;
        this.progressRevision = Math.max(this.progressRevision, headerRevision);
      },
      onEnd: () => {
        if (this.watch !== watch || this.stopped) return;
        this.watch = null;
        setTimeout(() => this.open(), WATCH_REOPEN_DELAY_MS);
      },
    });
    this.watch = watch;
  }

  /**
   * Waits (bounded) until a progress response says every event up to `revision` was sent;
   * true if it did. Asks for progress every poll, reopening on another member if needed.
   */
  async catchUp(revision: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (let round = 0; round < 1000 && Date.now() < deadline; round++) {
      if (this.progressRevision >= revision || this.lastRevision >= revision) return true;
      this.watch?.requestProgress();
      await sleep(100);
    }
    return this.progressRevision >= revision || this.lastRevision >= revision;
  }

  stop(): void {
    this.stopped = true;
    this.watch?.close();
    this.watch = null;
  }

  log(): WatcherLog {
    return {
      watcher: `watch ${this.key}`,
      keys: [this.key],
      startRevision: 1,
      events: this.events,
      progressRevision: Math.max(this.progressRevision, this.lastRevision),
    };
  }
}
