/**
 * The member loop: drives one RawNode through the Ready contract with injected I/O.
 *
 *   tick timer ─► rn.tick()        network ─► rn.step(msg)        clients ─► propose / read
 *                      └──────────────┬──────────────────────────────────┘
 *                                  drain(): one Ready at a time
 *     send(messagesNow: a leader's appends)  ─►  persistence.save(hardState, entries, snapshot)
 *       ── durable ──►  storage (MemoryStorage)
 *     (a commit index alone is not waited for: it goes with the next synced save, Ready.mustSync)
 *       ─► network.send(messages)  ─► apply snapshot, committed entries  ─► resolve proposals
 *       ─► serve reads whose index is applied  ─► rn.advance()  ─► maybe take a snapshot
 *
 * Only src/io interfaces are used (Clock, Network, RaftPersistence), so the simulator runs this
 * very loop on virtual time, network and disk. Nothing here awaits: callbacks come back from the
 * event loop or from the simulator's event queue.
 *
 * Client-visible guarantees: a proposal resolves only once its entry is applied on this member
 * (so a read that follows on this member sees it); it fails with a ServerError — never hangs —
 * when its deadline passes (outcome unknown: TIMEOUT) or the member stops. A linearizable read
 * resolves once this member has applied the index a ReadIndex round returned, which reflects
 * every write acknowledged before the read began.
 */
import type { Clock, TimerHandle } from '../io/clock.js';
import type { Network, PeerReport } from '../io/network.js';
import type { RaftPersistence } from '../io/persistence.js';
import { decodeConfChange } from '../raft/codec.js';
import { RaftError } from '../raft/errors.js';
import { RawNode } from '../raft/rawnode.js';
import type { MemoryStorage } from '../raft/storage.js';
import {
  type BugName,
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  inConfState,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type RaftLogger,
  type RaftStatus,
  ReadOnlyOption,
  type ReadState,
  type Ready,
  type SoftState,
  StateType,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import type { Random } from '../util/prng.js';
import { decodeEnvelope, encodeEnvelope } from './envelope.js';
import { ServerError } from './errors.js';
import type { ReplicatedStateMachine } from './state-machine.js';

/** Proposals waiting for their entry to be applied, at most. */
export const PROPOSALS_PENDING_MAX = 16_384;
/** Reads waiting for a read index or for apply, at most. */
export const READS_PENDING_MAX = 16_384;
/** A ReadIndex context: 'R', the member id and the round number (float64 each: safe integers). */
const READ_CTX_BYTES = 17;
/** Bytes of one command, at most (etcd's default request limit plus room for the envelope). */
export const COMMAND_BYTES_MAX = 2 * 1024 * 1024;
/**
 * Proposal and read-round numbers of one incarnation start at a random multiple of this, below
 * 2^52: an entry or a ReadIndex answer left by an earlier incarnation of the same member id must
 * not be taken for this one's (src/sim/FINDINGS.md #7), and the numbers stay safe integers.
 */
const INCARNATION_SEQ_STRIDE = 2 ** 21;
const INCARNATION_STARTS = 2 ** 31;
/**
 * The Raft options every member runs with (the simulator's member mode prints and checks
 * against these; the raw simulator draws its own).
 */
export const MEMBER_RAFT = Object.freeze({
  maxMsgBytes: 1024 * 1024,
  maxInflightMsgs: 256,
  maxUncommittedBytes: 64 * 1024 * 1024,
  maxPendingReads: 4096,
  maxCommittedBytesPerReady: 16 * 1024 * 1024,
  preVote: true,
  checkQuorum: true,
  readOnlyOption: ReadOnlyOption.Safe,
  disableProposalForwarding: false,
});

/**
 * With the log-bytes rule on (snapshotEveryEntriesMax), a snapshot waits until the bytes logged
 * since the last one reach this many times its image's size: packing then costs at most a
 * quarter of a byte per byte logged, while the log kept in memory and replayed at a restart is
 * at most about four images (and at most snapshotEveryEntriesMax entries or
 * SNAPSHOT_LOG_BYTES_MAX).
 */
export const SNAPSHOT_LOG_BYTES_PER_IMAGE_BYTE = 4;
/** The log-bytes rule never lets the log since the last snapshot grow past this many bytes. */
export const SNAPSHOT_LOG_BYTES_MAX = 64 * 1024 * 1024;
/**
 * An image smaller than this is cheap to pack: the log-bytes rule defers only larger ones, so a
 * small state snapshots every snapshotEveryEntries as before (restarts replay a short log).
 */
export const SNAPSHOT_DEFER_IMAGE_BYTES_MIN = 1024 * 1024;

/**
 * Whether the log has grown enough since the last snapshot for the next one. A snapshot packs the
 * whole state (every record: a read of the backend and a copy), so taken every N entries its
 * cost per entry grows with the state: at 20,000 records of 256 bytes and N = 10,000 it was
 * 3–7 % of each member's main thread in `npm run bench:profile`. Past `everyEntries`, a large
 * image waits for the log to outgrow it (SNAPSHOT_LOG_BYTES_PER_IMAGE_BYTE), within
 * `everyEntriesMax` entries and SNAPSHOT_LOG_BYTES_MAX bytes.
 */
export function snapshotDue(
  entries: number,
  logBytes: number,
  imageBytes: number,
  everyEntries: number,
  everyEntriesMax: number,
): boolean {
  if (entries < everyEntries) return false;
  return (
    imageBytes < SNAPSHOT_DEFER_IMAGE_BYTES_MIN ||
    entries >= everyEntriesMax ||
    logBytes >= SNAPSHOT_LOG_BYTES_PER_IMAGE_BYTE * imageBytes ||
    logBytes >= SNAPSHOT_LOG_BYTES_MAX
  );
}

/** Share of the election timeout a leader lease gives up for clock drift between members. */
export const LEASE_DRIFT_MARGIN = 0.1;

/** Known bugs of the loop itself, switched on only by the simulator. */
export type LoopBugName = 'lease-by-ticks';

/** Bytes of a heartbeat context the layer above may send (see `heartbeat`), at most. */
export const HEARTBEAT_CONTEXT_BYTES_MAX = 128;

export interface MemberTiming {
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** A request (proposal or read) fails with TIMEOUT after this long. */
  readonly requestTimeoutMs: number;
}

/**
 * Times each command's apply (etcd_server_apply_duration_seconds): two clock reads and one
 * observation per entry, nothing allocated. Injected (metrics); none: not timed.
 */
export interface ApplyTimer {
  /** Monotonic milliseconds, fractional (performance.now): an apply takes microseconds. */
  nowMs(): number;
  observeSeconds(seconds: number): void;
}

export interface MemberOptions<R = unknown> {
  readonly id: NodeId;
  readonly clock: Clock;
  readonly network: Network;
  readonly persistence: RaftPersistence;
  /** The durable log as recovered (snapshot, entries, hard state); written after each save. */
  readonly storage: MemoryStorage;
  readonly stateMachine: ReplicatedStateMachine<R>;
  readonly random: Random;
  readonly timing: MemberTiming;
  /** Take a snapshot (and compact the log) every this many applied entries (see snapshotDue). */
  readonly snapshotEveryEntries: number;
  /**
   * When set (at least snapshotEveryEntries), a snapshot waits past snapshotEveryEntries until the
   * bytes logged since the last one outgrow its image (snapshotDue), or until this many entries:
   * a large state is then packed less often. Unset: every snapshotEveryEntries.
   */
  readonly snapshotEveryEntriesMax?: number;
  /** Entries kept behind a snapshot so slightly lagging followers need no snapshot. */
  readonly compactionKeepEntries: number;
  /**
   * When the network reports the leader's process gone (`down`), forget it and campaign within
   * a few ticks instead of waiting out the election timeout. Default true. Assumes a refused
   * connection means no process listens (see Raft.leaderDown for what lease reads rely on).
   */
  readonly fastFailover?: boolean;
  readonly logger?: RaftLogger;
  /** Known bugs switched on (the simulator's): raft's (BugName) and the loop's (LoopBugName). */
  readonly bugs?: ReadonlySet<string>;
  readonly hooks?: MemberHooks;
  readonly applyTimer?: ApplyTimer;
}

/** Observers the layers above plug in (lessor promotion, registry, metrics, the simulator). */
export interface MemberHooks {
  /** Leader or role changed (after the Ready that reported it was persisted). */
  onSoftState?(soft: SoftState, term: number): void;
  /** A membership change was applied. */
  onConfChange?(change: ConfChange, confState: ConfState, index: number): void;
  /**
   * A membership change was proposed through this member (`seq` names it), and later settled
   * (applied here, refused, failed or timed out: `error` says which). Observers only.
   */
  onConfChangeProposed?(change: ConfChange, seq: number): void;
  onConfChangeSettled?(seq: number, error: Error | null): void;
  /** An entry was applied (normal entries with their result; empty entries with undefined). */
  onApplied?(entry: Entry, result: unknown): void;
  /** A snapshot replaced the state machine's state (its index is now applied). */
  onSnapshotInstalled?(index: number): void;
  /** The member hit an unrecoverable error (a failed fdatasync) and stopped. */
  onFatal?(error: Error): void;
  /**
   * Every tick, after raft's: the duties of the layers above run by tick counts (schedule.ts),
   * so the member's tick is their only clock. `ticks` counts from 1 in this incarnation.
   */
  onTick?(ticks: number): void;
  /**
   * A message from a peer, after raft stepped it; `term` and `lead` are raft's view right
   * after the step (the soft state reported to onSoftState follows once persisted).
   */
  onStepped?(message: Message, term: number, lead: NodeId): void;
  /**
   * A Ready was taken from raft: its early messages (`messagesNow`) leave next, then its write
   * starts. With onReadySaved, the stage timestamps of an entry (bench/put-trace.ts).
   */
  onReadyTaken?(rd: Ready): void;
  /** The Ready's write is durable (or it had none): its messages leave next, then it applies. */
  onReadySaved?(rd: Ready): void;
}

type Callback<T> = (error: Error | null, value?: T) => void;

/** Who waits for a proposal: a command's proposer (the state machine's result) or a change's. */
type ProposalDone<R> =
  | { readonly isConfChange: false; readonly callback: Callback<R> }
  | { readonly isConfChange: true; readonly callback: Callback<ConfState> };

interface PendingProposal<R> {
  readonly seq: number;
  /** The entry data (a command's envelope) or the change whose context holds the envelope. */
  readonly data: Uint8Array | ConfChange;
  readonly deadlineMs: number;
  readonly leaderAtStart: NodeId;
  /** False while raft has refused it (no leader yet): retried on each tick. */
  proposed: boolean;
  readonly done: ProposalDone<R>;
}

interface PendingRead {
  readonly deadlineMs: number;
  /** The applied index this read waits for, once known. */
  index: number;
  readonly callback: Callback<number>;
}

interface ReadRound {
  readonly ctx: Uint8Array;
  readonly ctxKey: string;
  readonly issuedMs: number;
  readonly reads: PendingRead[];
}

export class Member<R = unknown> {
  readonly id: NodeId;
  private readonly options: MemberOptions<R>;
  private readonly clock: Clock;
  private readonly network: Network;
  private readonly storage: MemoryStorage;
  private readonly sm: ReplicatedStateMachine<R>;
  private rn: RawNode;

  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private tickTimer: TimerHandle | null = null;
  private drainScheduled = false;
  /** Raft's term when the Ready being handled was taken (what its soft state is of). */
  private readyTerm = 0;
  private backgroundScheduled = false;
  /** A Ready is being persisted; the next one waits (one save in flight, in order). */
  private saving = false;
  private snapshotting = false;
  /**
   * While positive, the Ready loop holds (nothing persisted, sent or applied; raft goes on
   * ticking and stepping in memory): the state machine's backend is not written (pauseApply).
   */
  private applyPauses = 0;
  /** pauseApply calls waiting for the save in flight to finish. */
  private pauseWaiters: (() => void)[] = [];
  /**
   * Raft was about to ship a snapshot that does not list its recipient: take a fresh one at the
   * next chance, so snapshots shipped list their recipient (as etcd's are). Else a member
   * re-added after a removal it missed refuses the older snapshot (raft's restore), and an idle
   * leader never takes a newer one: it never catches up (found by the simulator's redundancy mode).
   */
  private snapshotForAddedMember = false;
  /** The configuration of the snapshot being made; read only while `snapshotting`. */
  private snapshottingConfState: ConfState | null = null;
  private snapshotIndex: number;
  /** Bytes of the entries applied since the last snapshot was taken or installed. */
  private logBytesSinceSnapshot = 0;
  /** Bytes of the last snapshot's image (its state machine data): see snapshotDue. */
  private lastImageBytes: number;
  /** The last entry raft handed out and this loop handled (replayed or applied). */
  private handledIndex: number;
  /** Raft's configuration as of `handledIndex`. */
  private confState: ConfState;
  private soft: SoftState = { lead: NONE, raftState: StateType.Follower };
  private onStopped: (() => void) | null = null;

  private seq = 0;
  private readonly proposals = new Map<number, PendingProposal<R>>();
  /** Proposals accepted here that then failed (see `proposalsFailed`). */
  private proposalsFailedCount = 0;
  private readonly applyTimer: ApplyTimer | null;
  private readSeq = 0;
  private readQueue: PendingRead[] = [];
  private readRound: ReadRound | null = null;
  /** Reads that know their index and wait for apply, in arrival order. */
  private readsAwaitingApply: PendingRead[] = [];
  /** When a message from each peer last arrived (this member's clock): the policy's input. */
  private readonly heardAtMs = new Map<NodeId, number>();
  private ticks = 0;
  /** When each recent raft tick ran (monotonic ms), by tick number modulo the length. */
  private readonly tickAtMs: number[];

  constructor(options: MemberOptions<R>) {
    assert(options.snapshotEveryEntries >= 1, 'snapshotEveryEntries must be >= 1');
    assert(
      (options.snapshotEveryEntriesMax ?? options.snapshotEveryEntries) >=
        options.snapshotEveryEntries,
      'snapshotEveryEntriesMax must be >= snapshotEveryEntries',
    );
    assert(options.timing.heartbeatTicks < options.timing.electionTicks, 'heartbeat < election');
    this.options = options;
    this.applyTimer = options.applyTimer ?? null;
    this.id = options.id;
    this.clock = options.clock;
    this.network = options.network;
    this.storage = options.storage;
    this.sm = options.stateMachine;
    const initial = options.storage.initialState();
    this.confState = initial.confState;
    this.snapshotIndex = options.storage.snapshot().metadata.index;
    this.lastImageBytes = options.storage.snapshot().data.length;
    this.handledIndex = this.snapshotIndex;
    this.rn = this.newRawNode();
    // A lease never spans more than an election timeout of ticks (see leaseHolds).
    this.tickAtMs = new Array(options.timing.electionTicks + 1);
    const start = options.random.int(INCARNATION_STARTS) * INCARNATION_SEQ_STRIDE;
    this.seq = start;
    this.readSeq = start;
  }

  private newRawNode(): RawNode {
    const t = this.options.timing;
    return new RawNode({
      id: this.id,
      electionTicks: t.electionTicks,
      heartbeatTicks: t.heartbeatTicks,
      storage: this.storage,
      // Restart raft from the snapshot, not from the state machine's applied index: committed
      // entries after the snapshot are handed out again so that membership changes among them
      // reach raft's configuration (the state machine skips what it already holds).
      applied: this.storage.snapshot().metadata.index,
      ...MEMBER_RAFT,
      random: this.options.random,
      ...(this.options.logger === undefined ? {} : { logger: this.options.logger }),
      // Raft reads only its own names from the set.
      ...(this.options.bugs === undefined
        ? {}
        : { bugs: this.options.bugs as ReadonlySet<BugName> }),
    });
  }

  // -------------------------------------------------------------------------------------------
  // Life cycle

  start(): void {
    assert(this.state === 'new', `member ${this.id} started twice`);
    this.state = 'running';
    this.tickAtMs[this.rn.ticks % this.tickAtMs.length] = this.clock.now();
    this.network.onMessage((m) => this.receive(m));
    this.network.onReport((r) => this.report(r));
    this.scheduleTick();
    this.scheduleDrain();
    this.scheduleBackground();
  }

  /** Stops ticking and accepting work; finishes the save in flight, then fails what waits. */
  stop(done: () => void): void {
    if (this.state === 'stopped') {
      done();
      return;
    }
    if (this.tickTimer !== null) this.clock.clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.state = 'stopping';
    this.onStopped = done;
    if (!this.saving && !this.snapshotting) this.finishStop();
  }

  /**
   * Holds the Ready loop once the save in flight (if any) is done: from then until `resume()`,
   * no entry is applied, so the state machine's backend is not written (a defragment copies it
   * meanwhile). Raft keeps ticking and receiving; what it produced goes out at the next Ready.
   * The caller must resume soon (well within an election timeout on a leader, whose heartbeats
   * wait too) and exactly once.
   */
  pauseApply(): Promise<() => void> {
    this.applyPauses++;
    let resumed = false;
    const resume = (): void => {
      assert(!resumed, 'pauseApply resumed twice');
      resumed = true;
      this.applyPauses--;
      assert(this.applyPauses >= 0, 'apply pauses balanced');
      if (this.applyPauses === 0) {
        this.scheduleDrain();
        this.scheduleBackground();
      }
    };
    return new Promise((resolve) => {
      if (!this.saving) resolve(resume);
      else this.pauseWaiters.push(() => resolve(resume));
    });
  }

  get running(): boolean {
    return this.state === 'running';
  }

  private finishStop(): void {
    assert(this.state === 'stopping');
    this.state = 'stopped';
    this.failAll(new ServerError('STOPPED', 'etcdserver: server stopped'));
    const done = this.onStopped;
    this.onStopped = null;
    done?.();
  }

  private fatal(error: Error): void {
    this.options.logger?.warn(`member ${this.id} stops: ${error.message}`);
    if (this.tickTimer !== null) this.clock.clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.state = 'stopped';
    this.failAll(new ServerError('STOPPED', `etcdserver: server stopped (${error.message})`));
    this.options.hooks?.onFatal?.(error);
    const done = this.onStopped;
    this.onStopped = null;
    done?.();
  }

  private failAll(error: ServerError): void {
    for (const p of this.proposals.values()) p.done.callback(error);
    this.proposals.clear();
    const reads = [...this.readQueue, ...this.readsAwaitingApply, ...(this.readRound?.reads ?? [])];
    this.readQueue = [];
    this.readsAwaitingApply = [];
    this.readRound = null;
    for (const r of reads) r.callback(error);
  }

  // -------------------------------------------------------------------------------------------
  // Inputs

  private receive(m: Message): void {
    if (this.state !== 'running') return;
    this.heardAtMs.set(m.from, this.clock.now());
    try {
      this.rn.step(m);
    } catch (error) {
      // A local message type from the network is a peer's bug, not ours: drop it.
      if (error instanceof RaftError) {
        this.options.logger?.warn(`member ${this.id} dropped message: ${error.message}`);
        return;
      }
      throw error;
    }
    this.options.hooks?.onStepped?.(m, this.rn.raft.term, this.rn.raft.lead);
    this.scheduleDrain();
  }

  private report(r: PeerReport): void {
    if (this.state !== 'running') return;
    switch (r.kind) {
      case 'unreachable':
        this.rn.reportUnreachable(r.peer);
        break;
      case 'snapshot':
        this.rn.reportSnapshot(r.peer, r.ok);
        break;
      case 'down':
        this.rn.reportUnreachable(r.peer);
        if (this.options.fastFailover ?? true) this.rn.reportPeerDown(r.peer);
        break;
    }
    this.scheduleDrain();
  }

  private scheduleTick(): void {
    this.tickTimer = this.clock.setTimeout(() => this.onTick(), this.options.timing.tickMs);
  }

  private onTick(): void {
    if (this.state !== 'running') return;
    this.rn.tick();
    this.tickAtMs[this.rn.ticks % this.tickAtMs.length] = this.clock.now();
    this.ticks += 1;
    this.retryUnproposed();
    this.retryReadRound();
    this.expireDeadlines();
    this.scheduleTick();
    this.scheduleDrain();
    this.options.hooks?.onTick?.(this.ticks);
  }

  // -------------------------------------------------------------------------------------------
  // Proposals

  /** Proposes a command; `callback(null, result)` once applied here, with the state machine's result. */
  propose(command: Uint8Array, callback: Callback<R>): void {
    this.enqueueProposal(command, { isConfChange: false, callback });
  }

  /** Proposes a membership change; `callback(null, confState)` once applied here. */
  proposeConfChange(change: ConfChange, callback: Callback<ConfState>): void {
    const hooks = this.options.hooks;
    if (hooks?.onConfChangeProposed === undefined) {
      this.enqueueProposal(change, { isConfChange: true, callback });
      return;
    }
    const seq = this.seq + 1; // the number enqueueProposal gives it (or none, if refused)
    hooks.onConfChangeProposed(change, seq);
    this.enqueueProposal(change, {
      isConfChange: true,
      callback: (error, confState) => {
        hooks.onConfChangeSettled?.(seq, error);
        callback(error, confState);
      },
    });
  }

  private enqueueProposal(payload: Uint8Array | ConfChange, done: ProposalDone<R>): void {
    if (this.state !== 'running') {
      done.callback(new ServerError('STOPPED', 'etcdserver: server stopped'));
      return;
    }
    const seq = this.seq + 1;
    // The proposer's envelope rides in a change's context (raft keeps it opaque).
    const data =
      payload instanceof Uint8Array
        ? encodeEnvelope(this.id, seq, payload)
        : { ...payload, context: encodeEnvelope(this.id, seq, payload.context) };
    const bytes = data instanceof Uint8Array ? data.length : data.context.length;
    if (bytes > COMMAND_BYTES_MAX) {
      done.callback(
        new ServerError(
          'REQUEST_TOO_LARGE',
          `etcdserver: request is too large (${bytes} bytes; at most ${COMMAND_BYTES_MAX})`,
        ),
      );
      return;
    }
    if (this.proposals.size >= PROPOSALS_PENDING_MAX) {
      done.callback(new ServerError('TOO_MANY_REQUESTS', 'etcdserver: too many requests'));
      return;
    }
    this.seq = seq;
    const p: PendingProposal<R> = {
      seq,
      data,
      deadlineMs: this.clock.now() + this.options.timing.requestTimeoutMs,
      leaderAtStart: this.soft.lead,
      proposed: false,
      done,
    };
    this.proposals.set(seq, p);
    this.tryPropose(p);
    this.scheduleDrain();
  }

  private tryPropose(p: PendingProposal<R>): void {
    try {
      if (p.data instanceof Uint8Array) this.rn.propose(p.data);
      else this.rn.proposeConfChange(p.data);
      p.proposed = true;
    } catch (error) {
      if (!(error instanceof RaftError)) throw error;
      if (error.code === 'PROPOSAL_DROPPED') return; // no leader yet: retried on each tick
      this.proposals.delete(p.seq);
      this.proposalsFailedCount++;
      p.done.callback(new ServerError('UNHEALTHY', `etcdserver: ${error.message}`));
    }
  }

  private retryUnproposed(): void {
    if (this.soft.lead === NONE) return;
    for (const p of this.proposals.values()) if (!p.proposed) this.tryPropose(p);
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  /**
   * Linearizable read barrier: `callback(null, index)` once this member has applied an index
   * that reflects every write acknowledged before the call (ReadIndex; followers ask the leader).
   */
  readBarrier(callback: Callback<number>): void {
    if (this.state !== 'running') {
      callback(new ServerError('STOPPED', 'etcdserver: server stopped'));
      return;
    }
    if (this.pendingReadCount() >= READS_PENDING_MAX) {
      callback(new ServerError('TOO_MANY_REQUESTS', 'etcdserver: too many requests'));
      return;
    }
    const read: PendingRead = {
      deadlineMs: this.clock.now() + this.options.timing.requestTimeoutMs,
      index: 0,
      callback,
    };
    this.readQueue.push(read);
    if (this.readRound === null) this.startReadRound();
    this.scheduleDrain();
  }

  /**
   * Lease read barrier: on a leader holding a CheckQuorum lease, waits only for the local commit
   * index to be applied (no round trip); anywhere else it is a linearizable barrier.
   */
  leaseReadBarrier(callback: Callback<number>): void {
    if (this.state === 'running' && this.leaseHolds()) {
      const read: PendingRead = {
        deadlineMs: this.clock.now() + this.options.timing.requestTimeoutMs,
        index: this.rn.raft.log.committed,
        callback,
      };
      this.readsAwaitingApply.push(read);
      this.serveReads();
      return;
    }
    this.readBarrier(callback);
  }

  /**
   * The leader lease, measured in time as well as in ticks: raft counts it in ticks from the
   * tick its quorum's heartbeats were sent, but ticks stall with the process (a paused or
   * starved leader's ticks lag the real time in which its followers may already have elected
   * another). So the lease also ends an election timeout, less a drift margin, after that tick
   * ran by this member's monotonic clock.
   */
  private leaseHolds(): boolean {
    const start = this.rn.leaseStartTick();
    if (start === null) return false;
    // INJECTED BUG (simulator only): the lease counted in ticks alone.
    if (this.options.bugs?.has('lease-by-ticks') === true) return true;
    const at = this.tickAtMs;
    if (this.rn.ticks - start >= at.length) return false;
    const startedMs = at[start % at.length];
    if (startedMs === undefined) return false;
    const t = this.options.timing;
    const electionMs = t.tickMs * t.electionTicks;
    const marginMs = Math.max(t.tickMs, electionMs * LEASE_DRIFT_MARGIN);
    return this.clock.now() - startedMs < electionMs - marginMs;
  }

  private pendingReadCount(): number {
    return (
      this.readQueue.length + this.readsAwaitingApply.length + (this.readRound?.reads.length ?? 0)
    );
  }

  /** One ReadIndex round serves every read queued before it was issued (etcd batches so too). */
  private startReadRound(): void {
    assert(this.readRound === null);
    if (this.readQueue.length === 0) return;
    const n = ++this.readSeq;
    // Unique across members, not only here: the leader ignores a ReadIndex whose context is
    // already pending (read-only.ts addRequest), so two members' round n must differ.
    const ctx = new Uint8Array(READ_CTX_BYTES);
    ctx[0] = 0x52; // 'R'
    const view = new DataView(ctx.buffer);
    view.setFloat64(1, this.id);
    view.setFloat64(9, n);
    const reads = this.readQueue;
    this.readQueue = [];
    this.readRound = { ctx, ctxKey: ctxKey(ctx), issuedMs: this.clock.now(), reads };
    this.issueReadIndex(ctx);
  }

  private issueReadIndex(ctx: Uint8Array): void {
    try {
      this.rn.readIndex(ctx);
    } catch (error) {
      if (!(error instanceof RaftError)) throw error;
      // No leader or too many pending: the round is retried on a later tick.
    }
  }

  /** A round whose answer never came (lost message, leader change) is reissued with a new ctx. */
  private retryReadRound(): void {
    const round = this.readRound;
    if (round === null) return;
    const t = this.options.timing;
    const retryMs = t.tickMs * t.electionTicks;
    if (this.clock.now() - round.issuedMs < retryMs) return;
    this.readRound = null;
    this.readQueue = [...round.reads, ...this.readQueue];
    this.startReadRound();
  }

  private onReadStates(states: readonly ReadState[]): void {
    for (const rs of states) {
      const round = this.readRound;
      if (round === null || ctxKey(rs.requestCtx) !== round.ctxKey) continue; // a stale answer
      this.readRound = null;
      for (const read of round.reads) {
        read.index = rs.index;
        this.readsAwaitingApply.push(read);
      }
    }
    if (this.readRound === null && this.readQueue.length > 0) this.startReadRound();
  }

  private serveReads(): void {
    if (this.readsAwaitingApply.length === 0) return;
    const applied = this.sm.appliedIndex();
    const waiting: PendingRead[] = [];
    for (const read of this.readsAwaitingApply) {
      if (read.index <= applied) read.callback(null, read.index);
      else waiting.push(read);
    }
    this.readsAwaitingApply = waiting;
  }

  private expireDeadlines(): void {
    const now = this.clock.now();
    for (const p of this.proposals.values()) {
      if (p.deadlineMs > now) continue;
      this.proposals.delete(p.seq);
      this.proposalsFailedCount++;
      if (this.soft.lead === NONE && !p.proposed) {
        p.done.callback(new ServerError('NO_LEADER', 'etcdserver: no leader'));
      } else if (this.soft.lead !== p.leaderAtStart) {
        p.done.callback(
          new ServerError(
            'TIMEOUT_LEADER_FAIL',
            'etcdserver: request timed out, possibly due to previous leader failure',
          ),
        );
      } else {
        p.done.callback(new ServerError('TIMEOUT', 'etcdserver: request timed out'));
      }
    }
    const expire = (reads: PendingRead[]): PendingRead[] => {
      const kept: PendingRead[] = [];
      for (const r of reads) {
        if (r.deadlineMs > now) kept.push(r);
        else r.callback(new ServerError('TIMEOUT', 'etcdserver: request timed out'));
      }
      return kept;
    };
    this.readQueue = expire(this.readQueue);
    this.readsAwaitingApply = expire(this.readsAwaitingApply);
    if (this.readRound !== null) {
      const kept = expire(this.readRound.reads);
      this.readRound.reads.length = 0;
      this.readRound.reads.push(...kept);
    }
  }

  // -------------------------------------------------------------------------------------------
  // The Ready loop

  private scheduleDrain(): void {
    if (this.drainScheduled || this.state !== 'running') return;
    this.drainScheduled = true;
    this.clock.defer(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    if (this.state !== 'running' || this.saving || this.applyPauses > 0) return;
    if (!this.rn.hasReady()) return;
    const rd = this.rn.ready();
    // The term of this Ready's soft state: raft may step to a later term while the Ready is
    // written (a leader that hears a newer vote), and the soft state is reported after.
    this.readyTerm = this.rn.raft.term;
    this.saving = true;
    this.options.hooks?.onReadyTaken?.(rd);
    // A leader's appends travel while its own write runs (Ready.messagesNow).
    if (rd.messagesNow.length > 0) this.send(rd.messagesNow);
    if (rd.mustSync || rd.entries.length > 0 || rd.snapshot !== null) {
      this.options.persistence.save(rd, (error) => this.saved(rd, error));
      return;
    }
    // Nothing here must be durable before it is acted on: a commit index (persistence writes it
    // with the next synced save, and one lost in a crash is learned again), messages, committed
    // entries (on disk already), reads. The loop goes on at once.
    if (rd.hardState !== null) {
      this.options.persistence.save(rd, (error) => {
        if (error !== null) this.fatal(error);
      });
    }
    this.saved(rd, null);
  }

  private saved(rd: Ready, error: Error | null): void {
    this.saving = false;
    // Paused callers resume in a microtask, after this whole Ready is applied.
    if (this.pauseWaiters.length > 0) {
      const waiters = this.pauseWaiters;
      this.pauseWaiters = [];
      for (const ready of waiters) ready();
    }
    if (error !== null) {
      this.fatal(error);
      return;
    }
    this.options.hooks?.onReadySaved?.(rd);
    // Durable: now the cache the core reads from may reflect it.
    if (rd.snapshot !== null) this.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) this.storage.append(rd.entries);
    if (rd.hardState !== null) this.storage.setHardState(rd.hardState);
    this.send(rd.messages);
    if (rd.softState !== null) this.changeSoftState(rd.softState);
    if (rd.snapshot !== null) this.installSnapshot(rd);
    if (rd.committedEntries.length > 0) {
      this.sm.transaction(() => {
        for (const entry of rd.committedEntries) this.applyEntry(entry);
      });
    }
    if (rd.readStates.length > 0) this.onReadStates(rd.readStates);
    this.serveReads();
    this.rn.advance(rd);
    if (this.state === 'stopping') {
      if (!this.snapshotting) this.finishStop();
      return;
    }
    this.maybeSnapshot();
    this.scheduleDrain();
    this.scheduleBackground();
  }

  /**
   * The state machine's deferred work (a large compaction's deletes), a bounded slice per turn
   * between Readies, so no apply holds the loop for all of it. Not while apply is paused (a
   * defragment copies the backend then).
   */
  private scheduleBackground(): void {
    if (this.backgroundScheduled || this.state !== 'running' || this.applyPauses > 0) return;
    if (this.sm.backgroundPending?.() !== true) return;
    this.backgroundScheduled = true;
    this.clock.defer(() => {
      this.backgroundScheduled = false;
      if (this.state !== 'running' || this.applyPauses > 0) return;
      try {
        this.sm.backgroundStep?.();
      } catch (error) {
        this.fatal(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      this.scheduleBackground();
    });
  }

  private send(all: readonly Message[]): void {
    const messages = all.filter((m) => this.shipsListedSnapshot(m));
    if (messages.length === 0) return;
    // Group by destination: one send (one queue push) per peer per Ready.
    let start = 0;
    const sorted = messages.length === 1 ? messages : [...messages].sort((a, b) => a.to - b.to);
    for (let i = 1; i <= sorted.length; i++) {
      if (i === sorted.length || sorted[i]!.to !== sorted[start]!.to) {
        this.network.send(sorted[start]!.to, sorted.slice(start, i));
        start = i;
      }
    }
    // On the wire now, not at the end of the turn: the leader's appends leave before its WAL
    // write, its commit index before its apply, a follower's ack before anything else it does.
    this.network.flush?.();
  }

  /** False for a snapshot that does not list its recipient: held back, a fresh one is due. */
  private shipsListedSnapshot(m: Message): boolean {
    if (m.type !== MessageType.Snap || m.snapshot === null) return true;
    if (inConfState(m.snapshot.metadata.confState, m.to)) return true;
    // Raft retries while the fresh snapshot is packed (a second per 100k keys): one that lists
    // the peer is on its way already, and packing another would compete with its stream.
    const coming =
      this.snapshotting &&
      this.snapshottingConfState !== null &&
      inConfState(this.snapshottingConfState, m.to);
    if (!coming) this.snapshotForAddedMember = true;
    // Raft retries the peer (probe, then the fresh snapshot) once told this one failed.
    this.clock.defer(() => {
      if (this.state !== 'running') return;
      this.rn.reportSnapshot(m.to, false);
      this.scheduleDrain();
    });
    return false;
  }

  private changeSoftState(soft: SoftState): void {
    const leaderChanged = soft.lead !== this.soft.lead;
    this.soft = soft;
    if (leaderChanged && this.readRound !== null) {
      // The round may have gone to the old leader: ask the new one at once.
      const round = this.readRound;
      this.readRound = null;
      this.readQueue = [...round.reads, ...this.readQueue];
      this.startReadRound();
    }
    if (leaderChanged) this.retryUnproposed();
    this.options.hooks?.onSoftState?.(soft, this.readyTerm);
  }

  private installSnapshot(rd: Ready): void {
    const snap = rd.snapshot!;
    assert(snap.metadata.index > this.sm.appliedIndex(), 'snapshot older than applied state');
    const startMs = this.clock.now();
    this.sm.restore(snap);
    // The install holds the loop (the store is rebuilt from the image): say for how long.
    this.options.logger?.info(
      `member ${this.id} installed a snapshot at index ${snap.metadata.index} ` +
        `(${snap.data.length} bytes) in ${this.clock.now() - startMs} ms`,
    );
    this.confState = snap.metadata.confState;
    this.snapshotIndex = snap.metadata.index;
    this.handledIndex = snap.metadata.index;
    this.logBytesSinceSnapshot = 0;
    this.lastImageBytes = snap.data.length;
    this.options.hooks?.onSnapshotInstalled?.(snap.metadata.index);
  }

  private applyEntry(entry: Entry): void {
    this.handledIndex = entry.index;
    const applied = this.sm.appliedIndex();
    if (entry.index <= applied) {
      // Replayed after a restart: the durable state machine has it, raft's configuration not.
      if (entry.type === EntryType.ConfChange) this.replayConfChange(entry);
      return;
    }
    assert(entry.index === applied + 1, `apply gap: ${applied} then ${entry.index}`);
    this.logBytesSinceSnapshot += entry.data.length;
    const ctx = { index: entry.index, term: entry.term };
    if (entry.type === EntryType.ConfChange) {
      this.applyConfChangeEntry(entry);
      return;
    }
    if (entry.data.length === 0) {
      this.sm.applyNoop(ctx);
      this.options.hooks?.onApplied?.(entry, undefined);
      return;
    }
    const envelope = decodeEnvelope(entry.data);
    assert(envelope !== null, `entry ${entry.index} is not an envelope`);
    const timer = this.applyTimer;
    const startMs = timer === null ? 0 : timer.nowMs();
    const result = this.sm.apply(ctx, envelope.command);
    if (timer !== null) timer.observeSeconds(Math.max(0, timer.nowMs() - startMs) / 1000);
    this.options.hooks?.onApplied?.(entry, result);
    if (envelope.proposer === this.id) this.resolveCommand(envelope.seq, result);
  }

  private applyConfChangeEntry(entry: Entry): void {
    const ctx = { index: entry.index, term: entry.term };
    const change = decodeConfChange(entry.data);
    const envelope = change.context.length > 0 ? decodeEnvelope(change.context) : null;
    const inner: ConfChange = envelope === null ? change : { ...change, context: envelope.command };
    let confState: ConfState;
    try {
      confState = this.rn.applyConfChange(inner);
    } catch (error) {
      if (!(error instanceof RaftError)) throw error;
      // Refused (e.g. it would remove the last voter): recorded as a no-op on every member.
      this.sm.applyNoop(ctx);
      if (envelope?.proposer === this.id) {
        this.reject(envelope.seq, new ServerError('UNHEALTHY', `etcdserver: ${error.message}`));
      }
      return;
    }
    this.confState = confState;
    this.packSnapshotForAdded(inner);
    this.sm.applyConfChange(ctx, inner, confState);
    this.options.hooks?.onConfChange?.(inner, confState, entry.index);
    this.options.hooks?.onApplied?.(entry, confState);
    if (envelope?.proposer === this.id) this.resolveConfChange(envelope.seq, confState);
  }

  /**
   * A member just added will be sent a snapshot that lists it (the log it would replay is
   * compacted). The leader starts packing that snapshot now, while the new member's process
   * starts and dials, rather than once raft first asks to send it one.
   */
  private packSnapshotForAdded(change: ConfChange): void {
    if (this.soft.raftState !== StateType.Leader || this.storage.firstIndex() <= 1) return;
    const stored = this.storage.snapshot().metadata.confState;
    for (const single of change.changes) {
      if (single.type === ConfChangeType.RemoveNode || single.nodeId === this.id) continue;
      if (!inConfState(stored, single.nodeId)) this.snapshotForAddedMember = true;
    }
  }

  private replayConfChange(entry: Entry): void {
    const change = decodeConfChange(entry.data);
    const envelope = change.context.length > 0 ? decodeEnvelope(change.context) : null;
    try {
      this.confState = this.rn.applyConfChange(
        envelope === null ? change : { ...change, context: envelope.command },
      );
    } catch (error) {
      if (!(error instanceof RaftError)) throw error; // refused the first time too
    }
  }

  /** The pending proposal `seq` of this incarnation, removed; undefined when none waits. */
  private takeProposal(seq: number): PendingProposal<R> | undefined {
    const p = this.proposals.get(seq);
    if (p === undefined) return undefined; // timed out already, or proposed before a restart
    this.proposals.delete(seq);
    return p;
  }

  private resolveCommand(seq: number, result: R): void {
    const done = this.takeProposal(seq)?.done;
    if (done === undefined) return;
    assert(!done.isConfChange, `proposal ${seq} is a command`);
    done.callback(null, result);
  }

  private resolveConfChange(seq: number, confState: ConfState): void {
    const done = this.takeProposal(seq)?.done;
    if (done === undefined) return;
    assert(done.isConfChange, `proposal ${seq} is a membership change`);
    done.callback(null, confState);
  }

  private reject(seq: number, error: Error): void {
    const p = this.takeProposal(seq);
    if (p === undefined) return;
    this.proposalsFailedCount++;
    p.done.callback(error);
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots and compaction

  private maybeSnapshot(): void {
    const applied = this.sm.appliedIndex();
    const o = this.options;
    const due =
      snapshotDue(
        applied - this.snapshotIndex,
        this.logBytesSinceSnapshot,
        this.lastImageBytes,
        o.snapshotEveryEntries,
        o.snapshotEveryEntriesMax ?? o.snapshotEveryEntries,
      ) ||
      (this.snapshotForAddedMember && applied > this.storage.snapshot().metadata.index);
    if (this.snapshotting || !due) return;
    // While replaying after a restart, raft's configuration lags the state machine: a snapshot
    // now would pair the state at `applied` with an older configuration.
    if (this.handledIndex < applied) return;
    this.snapshotForAddedMember = false;
    this.snapshotting = true;
    this.logBytesSinceSnapshot = 0;
    const confState = this.confState;
    this.snapshottingConfState = confState;
    const sliced = this.sm.snapshotInSlices;
    if (sliced === undefined) {
      this.saveOwnSnapshot(applied, confState, this.sm.snapshot());
      return;
    }
    // A large state is packed a slice per event-loop turn from a read view taken now (at
    // `applied`), so the member keeps serving meanwhile.
    const startMs = this.clock.now();
    let slices = 0;
    sliced.call(
      this.sm,
      (next) =>
        this.clock.defer(() => {
          if (this.state === 'running') {
            slices++;
            next(true);
            return;
          }
          next(false); // stopping: the next incarnation snapshots instead
          this.snapshotting = false;
          if (this.state === 'stopping' && !this.saving) this.finishStop();
        }),
      (data) => {
        this.options.logger?.info(
          `member ${this.id} packed a snapshot at index ${applied} (${data.length} bytes) ` +
            `in ${this.clock.now() - startMs} ms, ${slices} slices`,
        );
        // A newer snapshot (from the leader) may have replaced the log meanwhile: this one is moot.
        if (applied <= this.storage.snapshot().metadata.index) {
          this.snapshotting = false;
          return;
        }
        this.saveOwnSnapshot(applied, confState, data);
      },
    );
  }

  /** Stores a snapshot of this member's own state at `index`, then compacts the log behind it. */
  private saveOwnSnapshot(index: number, confState: ConfState, data: Uint8Array): void {
    assert(this.snapshotting, 'a snapshot in progress');
    const snap = this.storage.createSnapshot(index, confState, data);
    this.lastImageBytes = data.length;
    this.options.persistence.saveSnapshot(snap, (error) => {
      this.snapshotting = false;
      if (error !== null) {
        this.fatal(error);
        return;
      }
      this.snapshotIndex = snap.metadata.index;
      const compactTo = snap.metadata.index - this.options.compactionKeepEntries;
      if (compactTo > this.storage.firstIndex()) this.storage.compact(compactTo);
      this.options.persistence.release(snap.metadata.index);
      if (this.state === 'stopping' && !this.saving) this.finishStop();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Views and admin

  status(): RaftStatus {
    return this.rn.status();
  }

  get leader(): NodeId {
    return this.soft.lead;
  }

  get isLeader(): boolean {
    return this.soft.raftState === StateType.Leader;
  }

  get term(): number {
    return this.rn.raft.term;
  }

  get commitIndex(): number {
    return this.rn.raft.log.committed;
  }

  get appliedIndex(): number {
    return this.sm.appliedIndex();
  }

  /** The last index of this member's durable log (its snapshot's when the log is empty). */
  get durableIndex(): number {
    return this.storage.lastIndex();
  }

  get configuration(): ConfState {
    return this.confState;
  }

  /**
   * Proposals accepted here (past the size and count limits) that failed: raft refused them,
   * they timed out, or a membership change was refused at apply. As etcd counts
   * proposals_failed_total: not those failed by a stop.
   */
  get proposalsFailed(): number {
    return this.proposalsFailedCount;
  }

  /** Proposals made here still waiting for their outcome (etcd's proposals_pending). */
  get pendingProposals(): number {
    return this.proposals.size;
  }

  /** When a message from each peer last arrived here (ms of this member's clock). */
  get lastHeardMs(): ReadonlyMap<NodeId, number> {
    return this.heardAtMs;
  }

  /**
   * Leader only: a heartbeat carrying `context` to `to`, a member Raft does not message (outside
   * the configuration). Commit 0: it commits nothing. Raft's answer (a HeartbeatResp, dropped by
   * raft: no progress for the sender) lands in `lastHeardMs`, so a live round trip is seen.
   */
  heartbeat(to: NodeId, context: Uint8Array): void {
    assert(context.length <= HEARTBEAT_CONTEXT_BYTES_MAX, 'heartbeat context size');
    if (!this.isLeader || to === this.id || this.state !== 'running') return;
    const probe: Message = {
      type: MessageType.Heartbeat,
      to,
      from: this.id,
      term: this.term,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      snapshot: null,
      reject: false,
      rejectHint: 0,
      context,
    };
    this.network.send(to, [probe]);
  }

  /**
   * Leader only: the highest index every voter (both halves of a joint configuration) holds
   * durably — its match index, this member's own durable log — or 0 off the leader.
   */
  votersDurableIndex(): number {
    if (!this.isLeader) return 0;
    const raft = this.rn.raft;
    if (raft.state !== StateType.Leader) return 0;
    let lowest = Number.POSITIVE_INFINITY;
    const { voters, votersOutgoing } = this.confState;
    for (const id of [...voters, ...votersOutgoing]) {
      const match = id === this.id ? this.durableIndex : raft.tracker.progress.get(id)?.match;
      lowest = Math.min(lowest, match ?? 0);
    }
    return Number.isFinite(lowest) ? lowest : 0;
  }

  /** A membership change was proposed (here, or appended as leader) and is not applied yet. */
  get confChangePending(): boolean {
    for (const p of this.proposals.values()) if (p.done.isConfChange) return true;
    return this.rn.raft.pendingConfIndex > this.sm.appliedIndex();
  }

  /** Asks the leader to hand leadership to `to` (MoveLeader). */
  transferLeader(to: NodeId): void {
    this.rn.transferLeader(to);
    this.scheduleDrain();
  }

  /** Starts an election now (tests and `tandem member` admin). */
  campaign(): void {
    this.rn.campaign();
    this.scheduleDrain();
  }
}

function ctxKey(ctx: Uint8Array): string {
  let s = '';
  for (let i = 0; i < ctx.length; i++) s += String.fromCharCode(ctx[i]!);
  return s;
}
