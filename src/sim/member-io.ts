/**
 * The src/io interfaces on the simulator's virtual clock, network and disk, so that member mode
 * runs the production member loop (src/server/member.ts) unchanged:
 *
 *   SimClock        Clock: now() is the queue's virtual time; timers and defer are queue events
 *   SimPeerNetwork  Network: send → SimNetwork (latency, loss, duplication, partitions)
 *   SimPersistence  RaftPersistence: save → a SimDisk write; durable = what completed
 *   DigestBackend   a MemoryBackend that keeps an exact digest of its whole contents
 *   SimForwarder    LeaderForwarder: a follower's lease and ack=all calls to the leader's façade
 *
 * One instance of each per member incarnation (a process): a crash kills the clock (its timers
 * never fire), drops the network handlers and loses the disk writes in flight.
 */
import type { Clock, TimerHandle } from '../io/clock.js';
import type { MessageHandler, Network, PeerReport, PeerReportHandler } from '../io/network.js';
import type { Done, PersistRequest, RaftPersistence } from '../io/persistence.js';
import type { Backend, Bucket, ReadView, ScanVisitor, WriteTx } from '../kv/backend/backend.js';
import { MemoryBackend } from '../kv/backend/memory.js';
import { META_COMPACT_REVISION } from '../kv/mvcc/store.js';
import type { LeaseId } from '../kv/types.js';
import type { MemoryStorage } from '../raft/storage.js';
import type { Entry, HardState, Message, NodeId, Snapshot } from '../raft/types.js';
import type { EtcdBackend, LeaderForwarder, LeaseTimeToLiveResult } from '../server/contract.js';
import { ServerError } from '../server/errors.js';
import { assert } from '../util/assert.js';
import { bytesEqual } from '../util/bytes.js';
import type { Random } from '../util/prng.js';
import type { Checker } from './checker.js';
import type { SimDisk } from './disk.js';
import type { SimNetwork } from './network.js';
import type { EventQueue } from './queue.js';

/** Faults injected in the simulated I/O itself, to prove the member-mode checks can fail. */
export const SIM_FAULTS = ['send-before-persist', 'ack-before-apply', 'defer-term-vote'] as const;
export type SimFault = (typeof SIM_FAULTS)[number];

// ---------------------------------------------------------------------------------------------
// Clock

/** The wall-clock time at virtual time 0 (2026-01-01T00:00:00Z). */
export const SIM_EPOCH_MS = Date.UTC(2026, 0, 1);

interface SimTimer {
  cancelled: boolean;
}

export class SimClock implements Clock {
  private alive = true;
  /** While the process is paused (SIGSTOP), nothing of it runs before this virtual time. */
  private pausedUntilMs = Number.NEGATIVE_INFINITY;
  /** Work that arrived during a pause, per channel (a connection, the timers, the disk). */
  private readonly held = new Map<string, (() => void)[]>();

  /** `rng` orders the work held during a pause on resuming (see resume). */
  constructor(
    private readonly queue: EventQueue,
    private readonly rng: Random,
  ) {}

  /** The process is stopped until `untilMs` (SIGSTOP, then SIGCONT): its work waits. */
  pause(untilMs: number): void {
    assert(untilMs >= this.queue.nowMs, 'a pause ends in the future');
    if (untilMs <= this.pausedUntilMs) return;
    this.pausedUntilMs = untilMs;
    this.queue.at(untilMs, () => this.resume());
  }

  get paused(): boolean {
    return this.queue.nowMs < this.pausedUntilMs;
  }

  /**
   * Runs `fn` for the process now, or, while it is paused, when it resumes. `channel` names
   * where the work comes from: each channel keeps its order (a TCP connection, the timers).
   */
  run(fn: () => void, channel = 'timers'): void {
    if (!this.alive) return;
    if (!this.paused) {
      fn();
      return;
    }
    const list = this.held.get(channel);
    if (list === undefined) this.held.set(channel, [fn]);
    else list.push(fn);
  }

  /**
   * SIGCONT: what waited runs now, each channel in its own order but the channels interleaved
   * at random, as a resumed event loop finds its timers expired and its sockets readable at
   * once and reads them in whatever order the kernel reports them, not in arrival order.
   */
  private resume(): void {
    if (this.paused || !this.alive) return; // extended meanwhile: a later resume runs it
    while (this.held.size > 0) {
      const channels = [...this.held.keys()];
      const channel = channels[this.rng.int(channels.length)]!;
      const list = this.held.get(channel)!;
      const fn = list.shift()!;
      if (list.length === 0) this.held.delete(channel);
      fn();
      if (!this.alive || this.paused) return;
    }
  }

  /** Whole milliseconds, as the real clock gives them. */
  now(): number {
    return Math.floor(this.queue.nowMs);
  }

  /** Virtual time from a fixed epoch: every member of a run shares one wall clock. */
  wallNow(): number {
    return SIM_EPOCH_MS + this.now();
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    assert(delayMs >= 0, `timer delay ${delayMs}`);
    const timer: SimTimer = { cancelled: false };
    this.queue.after(delayMs, () => {
      if (!timer.cancelled) this.run(() => timer.cancelled || callback());
    });
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as SimTimer).cancelled = true;
  }

  defer(callback: () => void): void {
    this.queue.after(0, () => this.run(callback));
  }

  /** The process died: no timer of this incarnation fires again. */
  kill(): void {
    this.alive = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Network

export class SimPeerNetwork implements Network {
  private messageHandler: MessageHandler | null = null;
  private reportHandler: PeerReportHandler | null = null;
  private closed = false;
  readonly peers = new Set<NodeId>();

  constructor(
    readonly id: NodeId,
    private readonly network: SimNetwork<Message>,
    private readonly clock: SimClock,
  ) {}

  send(to: NodeId, messages: readonly Message[]): void {
    if (this.closed) return;
    for (const m of messages) this.network.send(this.id, to, m);
  }

  onMessage(handler: MessageHandler): void {
    this.messageHandler = handler;
  }

  onReport(handler: PeerReportHandler): void {
    this.reportHandler = handler;
  }

  setPeer(id: NodeId): void {
    this.peers.add(id);
  }

  removePeer(id: NodeId): void {
    this.peers.delete(id);
  }

  async close(): Promise<void> {
    this.kill();
  }

  /** The process died: nothing more is sent or received. */
  kill(): void {
    this.closed = true;
    this.messageHandler = null;
    this.reportHandler = null;
  }

  /** Called by the simulation (from an event of its own) when a message arrives. */
  deliver(message: Message): boolean {
    if (this.closed || this.messageHandler === null) return false;
    // A paused process reads its socket when it resumes (the bytes wait in the kernel).
    this.clock.run(() => {
      if (!this.closed) this.messageHandler?.(message);
    }, `peer ${message.from}`);
    return true;
  }

  report(report: PeerReport): void {
    if (this.closed) return;
    this.clock.run(() => {
      if (!this.closed) this.reportHandler?.(report);
    }, 'transport');
  }
}

// ---------------------------------------------------------------------------------------------
// Persistence

/**
 * The member's durable Raft state: `durable` (log, snapshot, hard state) changes only when a
 * disk write completes. It is what a restart recovers. The checker sees every durable change.
 */
export class SimPersistence implements RaftPersistence {
  saves = 0;
  /**
   * The hard state a synced write made durable last. A commit-only hard state is not written on
   * its own (storage/wal/wal.ts): it goes with the next synced write. The model keeps it in
   * `durable` at once (the checker learns the commit index when the member does) and `crash`
   * puts this one back, as a crash loses the deferred one.
   */
  private syncedHardState: HardState;
  /** The latest hard state handed to `save` (written, in flight or deferred), in call order. */
  private latestHardState: HardState;

  constructor(
    private readonly node: NodeId,
    readonly durable: MemoryStorage,
    private readonly disk: SimDisk,
    /** The incarnation's clock: a completion scheduled on it dies with the process. */
    private readonly clock: SimClock,
    private readonly checker: Checker,
    private readonly fault: SimFault | null,
  ) {
    this.syncedHardState = durable.initialState().hardState;
    this.latestHardState = this.syncedHardState;
  }

  /** The process died: a commit-only hard state no synced write carried is lost. */
  crash(): void {
    const hs = this.durable.initialState().hardState;
    const synced = this.syncedHardState;
    if (hs.term === synced.term && hs.vote === synced.vote && hs.commit === synced.commit) return;
    this.durable.setHardState(synced);
    this.checker.onCrashRevert(this.node, synced.commit);
  }

  save(request: PersistRequest, done: Done): void {
    const { hardState, entries, snapshot } = request;
    this.saves++;
    if (hardState !== null) this.latestHardState = hardState;
    if (hardState === null && entries.length === 0 && snapshot === null) {
      // Nothing to write (messages, committed entries or reads only): no disk round.
      this.clock.defer(() => done(null));
      return;
    }
    // INJECTED FAULT defer-term-vote: a new term or vote is deferred like a commit index.
    const deferrable = !request.mustSync || this.fault === 'defer-term-vote';
    if (deferrable && entries.length === 0 && snapshot === null) {
      // Not written (see `syncedHardState`): deferred to the next synced write.
      this.persist(hardState, entries, snapshot);
      this.clock.defer(() => done(null));
      return;
    }
    // What this write makes durable: its own hard state, or the deferred one it carries, or the
    // one an earlier write (in flight, completing first) carries.
    const covers = this.latestHardState;
    const write = (): void => {
      this.persist(hardState, entries, snapshot);
      this.synced(covers);
    };
    if (this.fault === 'send-before-persist') {
      // INJECTED FAULT: report durable at once; the write lands (or is lost) later.
      this.disk.write(write, () => {});
      this.clock.defer(() => done(null));
      return;
    }
    // The disk completes the write while the process may be paused: it learns so on resuming.
    this.disk.write(write, () => this.clock.run(() => done(null), 'disk'));
  }

  private synced(covers: HardState): void {
    this.syncedHardState = covers;
    this.checker.onSynced(this.node, covers.commit);
  }

  /** Into the durable log; what it makes synced, `synced` tells the checker. */
  private persist(hs: HardState | null, entries: readonly Entry[], snap: Snapshot | null): void {
    const log = this.durable;
    if (snap !== null) {
      const index = snap.metadata.index;
      this.checker.beforeDiscard(this.node, log, index + 1, `installing a snapshot at ${index}`);
      log.applySnapshot(snap);
    }
    if (entries.length > 0) {
      this.checker.beforeAppend(this.node, log, entries);
      log.append(entries);
    }
    if (hs !== null) log.setHardState(hs);
    const durableHs = log.initialState().hardState;
    this.checker.onPersist(
      this.node,
      log,
      snap,
      entries.filter((e) => e.index >= log.firstIndex()),
      hs === null ? null : durableHs.commit,
      durableHs.term,
      false,
    );
  }

  saveSnapshot(snapshot: Snapshot, done: Done): void {
    // The WAL writes the snapshot's marker as a synced save: a deferred hard state goes with it.
    const covers = this.latestHardState;
    this.disk.write(
      () => {
        this.synced(covers);
        const meta = snapshot.metadata;
        // A newer snapshot from the leader may have landed first: the older one is moot.
        if (meta.index <= this.durable.snapshot().metadata.index) return;
        this.durable.createSnapshot(meta.index, meta.confState, snapshot.data);
      },
      () => this.clock.run(() => done(null), 'disk'),
    );
  }

  release(index: number): void {
    // Entries covered by a durable snapshot: reclaimed, as the WAL deletes old segments.
    if (index > this.durable.firstIndex() && index <= this.durable.snapshot().metadata.index) {
      this.durable.compact(index);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// KV backend with a digest

/**
 * An exact digest of the backend's contents, kept incrementally: the sum (mod 2^32, twice, with
 * two independent hashes) of a hash of every (bucket, key, value) record. A set hash, so it
 * depends only on the contents, never on the order of writes; O(1) per put or delete. It covers
 * both buckets: the MVCC key history and the meta bucket (applied index, leases, registry).
 *
 * The digest is of the logical contents, the same on every member at an applied index: records a
 * compaction left for later deletion in batches (`digestExcluding`) and the meta key saying how
 * far those deletes got (`finished_compact_rev`) depend on when each member ran its batches.
 *
 * Why not `TandemStateMachine.hash()` at every applied index: it scans the whole key history
 * (O(history) per entry, O(n²) per run) and it refuses to run inside the store's batch
 * transaction, which is where the member's per-entry hook runs. `hash()` is still compared once
 * all members have converged at the end of a run.
 */
export class DigestBackend implements Backend {
  readonly kind = 'memory';
  private readonly inner = new MemoryBackend();
  private h1 = 0;
  private h2 = 0;

  /** The digest as one number (53 bits: safe to compare and to mix into a trace). */
  get digest(): number {
    return (this.h1 >>> 0) * 0x200000 + (this.h2 >>> 11);
  }

  /** The digest without these key-bucket records (a compaction's deletes still to run). */
  digestExcluding(keyRecords: Iterable<Uint8Array>): number {
    let h1 = this.h1;
    let h2 = this.h2;
    for (const key of keyRecords) {
      const value = this.inner.get('key', key);
      if (value === undefined) continue;
      const [a, b] = recordHash('key', key, value);
      h1 = (h1 - a) | 0;
      h2 = (h2 - b) | 0;
    }
    return (h1 >>> 0) * 0x200000 + (h2 >>> 11);
  }

  get(bucket: Bucket, key: Uint8Array): Uint8Array | undefined {
    return this.inner.get(bucket, key);
  }

  scan(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void {
    this.inner.scan(bucket, start, end, visit);
  }

  scanViews(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void {
    this.inner.scanViews(bucket, start, end, visit);
  }

  write<T>(fn: (tx: WriteTx) => T): T {
    const before1 = this.h1;
    const before2 = this.h2;
    try {
      return this.inner.write((tx) => {
        const wrapped: WriteTx = {
          get: (b, k) => tx.get(b, k),
          scan: (b, s, e, v) => tx.scan(b, s, e, v),
          put: (b, k, v) => {
            const old = tx.get(b, k);
            if (old !== undefined) this.remove(b, k, old);
            this.add(b, k, v);
            tx.put(b, k, v);
          },
          delete: (b, k) => {
            const old = tx.get(b, k);
            if (old !== undefined) this.remove(b, k, old);
            tx.delete(b, k);
          },
        };
        return fn(wrapped);
      });
    } catch (error) {
      // The inner backend rolled back: so does the digest.
      this.h1 = before1;
      this.h2 = before2;
      throw error;
    }
  }

  readView(): ReadView {
    return this.inner.readView();
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  private add(bucket: Bucket, key: Uint8Array, value: Uint8Array): void {
    if (bucket === 'meta' && bytesEqual(key, META_COMPACT_REVISION)) return;
    const [a, b] = recordHash(bucket, key, value);
    this.h1 = (this.h1 + a) | 0;
    this.h2 = (this.h2 + b) | 0;
  }

  private remove(bucket: Bucket, key: Uint8Array, value: Uint8Array): void {
    if (bucket === 'meta' && bytesEqual(key, META_COMPACT_REVISION)) return;
    const [a, b] = recordHash(bucket, key, value);
    this.h1 = (this.h1 - a) | 0;
    this.h2 = (this.h2 - b) | 0;
  }
}

/** Two independent 32-bit hashes of a record (FNV-1a and a multiply-rotate mix). */
function recordHash(bucket: Bucket, key: Uint8Array, value: Uint8Array): [number, number] {
  let a = bucket === 'key' ? 0x811c9dc5 : 0x1b873593;
  let b = bucket === 'key' ? 0x9747b28c : 0x2f6b1a5d;
  const mix = (x: number): void => {
    a = Math.imul(a ^ x, 0x01000193);
    b = Math.imul(b + x, 0x9e3779b1);
    b = (b << 13) | (b >>> 19);
  };
  mix(key.length);
  for (let i = 0; i < key.length; i++) mix(key[i]!);
  mix(value.length + 0x100);
  for (let i = 0; i < value.length; i++) mix(value[i]!);
  // Finalize so that sums of records do not cancel structurally.
  a ^= a >>> 16;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 13;
  b ^= b >>> 15;
  b = Math.imul(b, 0xc2b2ae35);
  b ^= b >>> 16;
  return [a | 0, b | 0];
}

// ---------------------------------------------------------------------------------------------
// Forwarding to the leader

/** What a forwarded call needs of the simulation. */
export interface ForwardWorld {
  after(delayMs: number, fn: () => void): void;
  latencyMs(): number;
  connected(from: NodeId, to: NodeId): boolean;
  /**
   * The façade of the member serving `url` now, with a way to run in its process (a paused one
   * runs nothing until it resumes), or null when that member is down.
   */
  facadeAt(url: string): {
    readonly id: NodeId;
    readonly facade: EtcdBackend;
    readonly run: (fn: () => void, channel: string) => void;
  } | null;
}

/** A forwarded call whose leader cannot be reached fails after this long (grpc's deadline). */
const FORWARD_TIMEOUT_MS = 3_000;

/**
 * LeaderForwarder over the virtual network: the call reaches the leader's façade one latency
 * later (if the link is up and the leader alive), its answer comes back one latency after it
 * settles; an unreachable leader fails the call after FORWARD_TIMEOUT_MS, as a gRPC deadline.
 */
export class SimForwarder implements LeaderForwarder {
  constructor(
    private readonly from: NodeId,
    private readonly world: ForwardWorld,
  ) {}

  leaseKeepAlive(urls: readonly string[], id: LeaseId): Promise<number> {
    return this.call(urls, (f) => f.leaseKeepAlive(id, FORWARDED));
  }

  leaseTimeToLive(
    urls: readonly string[],
    id: LeaseId,
    withKeys: boolean,
  ): Promise<LeaseTimeToLiveResult> {
    return this.call(urls, (f) => f.leaseTimeToLive(id, withKeys, FORWARDED));
  }

  awaitAllVoters(urls: readonly string[], index: number): Promise<void> {
    return this.call(urls, (f) => {
      assert(f.awaitAllVoters !== undefined, 'the façade answers ack=all');
      return f.awaitAllVoters(index);
    });
  }

  private call<T>(urls: readonly string[], fn: (facade: EtcdBackend) => Promise<T>): Promise<T> {
    const w = this.world;
    const url = urls[0];
    return new Promise<T>((resolve, reject) => {
      const unreachable = (): void =>
        w.after(FORWARD_TIMEOUT_MS, () =>
          reject(new ServerError('TIMEOUT', 'etcdserver: request timed out')),
        );
      const target = url === undefined ? null : w.facadeAt(url);
      if (target === null || !w.connected(this.from, target.id)) {
        unreachable();
        return;
      }
      w.after(w.latencyMs(), () => {
        const there = w.facadeAt(url!);
        if (there === null || there.id !== target.id || !w.connected(this.from, target.id)) {
          unreachable();
          return;
        }
        const back = (settle: () => void): void =>
          w.after(w.latencyMs(), () =>
            w.connected(target.id, this.from) ? settle() : unreachable(),
          );
        there.run(
          () =>
            fn(there.facade).then(
              (value) => back(() => resolve(value)),
              (error: unknown) => back(() => reject(error)),
            ),
          `forwarded from ${this.from}`,
        );
      });
    });
  }
}

const FORWARDED = { consistency: { kind: 'linearizable' }, ack: 'quorum' } as const;
