/**
 * The node host: the member loop of one simulated node, the glue between a RawNode and its
 * simulated disk, network and state machine, under the Ready contract:
 *
 *   ready() → send messagesNow (a leader's appends) → persist (hard state, entries, snapshot:
 *           one disk write that takes virtual time) → send messages → apply snapshot and
 *           committed entries → advance() → next ready()
 *
 * Durable state is `storage` (a MemoryStorage: log, snapshot and hard state), changed only when a
 * disk write completes, and, in the 'durable' apply mode, the state machine. A crash discards the
 * RawNode (all volatile Raft state), the Ready in flight and its unsent messages; a restart builds
 * a new RawNode from `storage`.
 */
import { decodeConfChange } from '../raft/codec.js';
import { RaftError } from '../raft/errors.js';
import { RawNode } from '../raft/rawnode.js';
import { MemoryStorage } from '../raft/storage.js';
import {
  type BugName,
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type NodeId,
  ReadOnlyOption,
  type ReadState,
  type Ready,
  StateType,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import type { Prng } from '../util/prng.js';
import type { Checker } from './checker.js';
import { SimDisk } from './disk.js';
import type { SimNetwork } from './network.js';
import type { SimParams } from './params.js';
import type { EventQueue } from './queue.js';
import { AppliedLog } from './statemachine.js';
import type { Trace } from './trace.js';

/** What a host needs from the simulation around it. */
export interface HostEnv {
  readonly queue: EventQueue;
  readonly network: SimNetwork<Message>;
  readonly checker: Checker;
  readonly trace: Trace;
  readonly params: SimParams;
  /** A normal entry was applied by `node`. */
  onApplied(node: NodeId, entry: Entry): void;
  /** A conf change entry was applied by `node`, giving `confState` (null when rejected). */
  onConfApplied(node: NodeId, index: number, cc: ConfChange, confState: ConfState | null): void;
  /** A ReadIndex read was served by `node` at `index` (its state machine has applied it). */
  onReadServed(node: NodeId, ctx: Uint8Array, index: number): void;
  /** `node` just sent a granted vote (after persisting it). */
  onVoteGranted(node: NodeId): void;
  /** `node` just became leader of `term`. */
  onLeaderElected(node: NodeId, term: number): void;
  /** `node`, leader of `term`, advanced its commit index for the first time in that term. */
  onLeaderFirstCommit(node: NodeId, term: number): void;
  /**
   * `node`'s process died: its peers' transports see their links refused (fast failover's
   * `down` report). Raised by every crash, a stop included.
   */
  onProcessGone(node: NodeId): void;
}

export type HostState = 'up' | 'down' | 'stopped';

/** Trace kinds (numbers mixed into the trace hash). */
export const TRACE_TICK = 1;
export const TRACE_PERSIST = 2;
export const TRACE_APPLY = 3;
export const TRACE_ROLE = 4;
export const TRACE_CRASH = 5;
export const TRACE_RESTART = 6;

/** Bytes of entry data handed out per Ready. */
const COMMITTED_BYTES_PER_READY_MAX = 64 * 1024;
const PENDING_READS_MAX = 64;
/** Messages a node buffers while its Ready is being persisted. */
const INBOX_MAX = 100_000;

export class NodeHost {
  state: HostState = 'down';
  readonly storage: MemoryStorage;
  /** The state machine: durable in 'durable' apply mode, rebuilt on restart in 'replay' mode. */
  sm = new AppliedLog();
  readonly disk: SimDisk;
  private rn: RawNode | null = null;
  /** Incremented by each crash and restart: events scheduled before it are void. */
  private epoch = 0;
  private readyInFlight = false;
  private readsWaiting: ReadState[] = [];
  /** Messages received while a Ready is in flight (unless `stepsDuringReady`). */
  private inbox: Message[] = [];
  private lastRole: StateType = StateType.Follower;
  private lastTerm = 0;
  /** The term whose leader completeness is still to check at the next ready(), or 0. */
  private completenessTerm = 0;
  /** As leader: the commit index when elected, until the first commit of the term (then -1). */
  private commitAtElection = -1;
  /** The hard state as of the last synced write: what survives a crash that loses the rest. */
  private syncedHardState: HardState;
  restarts = 0;
  readiesCount = 0;

  constructor(
    readonly id: NodeId,
    private readonly env: HostEnv,
    private readonly rng: Prng,
    storage: MemoryStorage = new MemoryStorage(),
  ) {
    this.storage = storage;
    this.syncedHardState = storage.initialState().hardState;
    this.disk = new SimDisk(env.queue, rng.fork(), env.params.disk);
  }

  get up(): boolean {
    return this.state === 'up';
  }

  /** Volatile view, for the workload: this node's role and term (null when not up). */
  role(): { state: StateType; term: number; lead: NodeId; commit: number } | null {
    if (this.rn === null) return null;
    const r = this.rn.raft;
    return { state: r.state, term: r.term, lead: r.lead, commit: r.log.committed };
  }

  /** The raft's log and configuration (null when not up), for the electability check. */
  raftView(): {
    lastIndex: number;
    lastTerm: number;
    termAt: (i: number) => number | undefined;
    firstIndex: number;
    voters: readonly NodeId[];
    votersOutgoing: readonly NodeId[];
    /** False while a committed conf change is unapplied: raft does not campaign then. */
    canCampaign: boolean;
  } | null {
    if (this.rn === null) return null;
    const r = this.rn.raft;
    let canCampaign = true;
    if (r.log.committed > r.log.applied) {
      const lo = Math.max(r.log.applied + 1, r.log.firstIndex());
      const pending = r.log.slice(lo, r.log.committed + 1, Number.POSITIVE_INFINITY);
      canCampaign = !pending.some((e) => e.type === EntryType.ConfChange);
    }
    return {
      lastIndex: r.log.lastIndex(),
      lastTerm: r.log.lastTerm(),
      termAt: (i) => r.log.term(i),
      firstIndex: r.log.firstIndex(),
      voters: r.tracker.config.voters,
      votersOutgoing: r.tracker.config.votersOutgoing,
      canCampaign,
    };
  }

  /** As `raftView().canCampaign` for the node restarted from its durable state now. */
  canCampaignAfterRestart(): boolean {
    const st = this.storage;
    const commit = st.initialState().hardState.commit;
    const snapIndex = st.snapshot().metadata.index;
    const applied =
      this.env.params.applyMode === 'durable' ? Math.min(this.sm.appliedIndex, commit) : snapIndex;
    if (commit <= applied) return true;
    const lo = Math.max(applied + 1, st.firstIndex());
    return !st
      .entries(lo, commit + 1, Number.POSITIVE_INFINITY)
      .some((e) => e.type === EntryType.ConfChange);
  }

  /**
   * The index up to which this node applies again, without any peer, if it crashes now: its
   * snapshot, or the commit index a crash keeps (only the synced one with `lose-unsynced`).
   */
  durablyKnownIndex(): number {
    const commit = this.env.params.loseUnsyncedWrites
      ? this.syncedHardState.commit
      : this.storage.initialState().hardState.commit;
    return Math.max(commit, this.storage.snapshot().metadata.index);
  }

  // -------------------------------------------------------------------------------------------
  // Life cycle

  /** Starts (or restarts) the node from its durable state. */
  start(): void {
    assert(this.state === 'down', `node ${this.id} starts while ${this.state}`);
    const p = this.env.params;
    if (p.applyMode === 'replay' || this.restarts === 0) {
      const snap = this.storage.snapshot();
      this.sm = new AppliedLog();
      this.sm.restore(snap.metadata.index, snap.data, snap.metadata.confState);
    }
    // A crash may have lost an unsynced commit index below what the durable state machine
    // applied: raft restarts from the commit it has, and entries handed out again up to the
    // state machine's index are skipped (etcd's consistent index does the same).
    const commit = this.storage.initialState().hardState.commit;
    this.rn = new RawNode({
      id: this.id,
      electionTicks: p.electionTicks,
      heartbeatTicks: p.heartbeatTicks,
      storage: this.storage,
      applied: Math.min(this.sm.appliedIndex, commit),
      maxMsgBytes: p.maxMsgBytes,
      maxInflightMsgs: p.maxInflightMsgs,
      maxUncommittedBytes: p.maxUncommittedBytes,
      maxPendingReads: PENDING_READS_MAX,
      maxCommittedBytesPerReady: COMMITTED_BYTES_PER_READY_MAX,
      preVote: p.preVote,
      checkQuorum: p.checkQuorum,
      readOnlyOption:
        p.leaseReads && p.checkQuorum ? ReadOnlyOption.LeaseBased : ReadOnlyOption.Safe,
      disableProposalForwarding: false,
      random: this.rng.fork(),
      bugs: p.bugs as ReadonlySet<BugName>,
    });
    this.state = 'up';
    this.epoch++;
    this.restarts++;
    this.lastRole = StateType.Follower;
    this.lastTerm = 0;
    this.completenessTerm = 0;
    this.env.trace.mix(TRACE_RESTART, this.id, this.sm.appliedIndex);
    if (this.env.trace.enabled) {
      this.env.trace.line(
        this.env.queue.nowMs,
        `n${this.id} start applied=${this.sm.appliedIndex}`,
      );
    }
    // Each node ticks at its own phase.
    this.scheduleTick(this.rng.float() * p.tickMs);
    this.afterEvent();
  }

  /** Loses everything volatile: the RawNode, the Ready in flight, unsent messages. */
  crash(): void {
    if (this.state !== 'up') return;
    this.disk.crash();
    const hs = this.storage.initialState().hardState;
    if (this.env.params.loseUnsyncedWrites && hs !== this.syncedHardState) {
      this.storage.setHardState(this.syncedHardState);
      this.env.checker.onCrashRevert(this.id, this.syncedHardState.commit);
      if (this.env.trace.enabled) {
        this.env.trace.line(
          this.env.queue.nowMs,
          `n${this.id} lost unsynced commit ${hs.commit} (back to ${this.syncedHardState.commit})`,
        );
      }
    }
    this.env.checker.forgetUndurableLeadership(this.id, this.storage.initialState().hardState.term);
    this.rn = null;
    this.state = 'down';
    this.epoch++;
    this.readyInFlight = false;
    this.readsWaiting = [];
    this.inbox = [];
    this.env.trace.mix(TRACE_CRASH, this.id);
    if (this.env.trace.enabled) this.env.trace.line(this.env.queue.nowMs, `n${this.id} crash`);
    this.env.onProcessGone(this.id);
  }

  /** Stops the node for good (it was removed from the cluster). */
  stop(): void {
    this.crash();
    this.state = 'stopped';
  }

  private scheduleTick(delayMs: number): void {
    const epoch = this.epoch;
    this.env.queue.after(delayMs, () => {
      if (epoch !== this.epoch) return;
      this.rn!.tick();
      this.afterEvent();
      this.scheduleTick(this.env.params.tickMs);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Inputs

  deliver(msg: Message): boolean {
    if (this.rn === null) return false;
    if (this.readyInFlight && !this.env.params.stepsDuringReady) {
      // The member loop reads the network between Readys (FINDINGS.md #6 is why by default).
      assert(this.inbox.length < INBOX_MAX, `node ${this.id} inbox overflow`);
      this.inbox.push(msg);
      return true;
    }
    this.step(msg);
    this.afterEvent();
    return true;
  }

  private step(msg: Message): void {
    try {
      this.rn!.step(msg);
    } catch (error) {
      if (!(error instanceof RaftError)) throw error;
    }
  }

  /** Returns false when raft dropped the proposal (or the node is down). */
  propose(data: Uint8Array): boolean {
    return this.call((rn) => rn.propose(data));
  }

  proposeConfChange(cc: ConfChange): boolean {
    return this.call((rn) => rn.proposeConfChange(cc));
  }

  readIndex(ctx: Uint8Array): boolean {
    return this.call((rn) => rn.readIndex(ctx));
  }

  transferLeader(to: NodeId): boolean {
    return this.call((rn) => rn.transferLeader(to));
  }

  campaign(): boolean {
    return this.call((rn) => rn.campaign());
  }

  reportUnreachable(to: NodeId): void {
    this.call((rn) => rn.reportUnreachable(to));
  }

  /** The transport saw `to`'s process gone (its links refused): see RawNode.reportPeerDown. */
  reportPeerDown(to: NodeId): void {
    this.call((rn) => rn.reportPeerDown(to));
  }

  reportSnapshot(to: NodeId, ok: boolean): void {
    this.call((rn) => rn.reportSnapshot(to, ok));
  }

  private call(fn: (rn: RawNode) => void): boolean {
    if (this.rn === null) return false;
    let ok = true;
    try {
      fn(this.rn);
    } catch (error) {
      if (!(error instanceof RaftError)) throw error;
      ok = false;
    }
    this.afterEvent();
    return ok;
  }

  // -------------------------------------------------------------------------------------------
  // The Ready loop

  private afterEvent(): void {
    this.observe();
    this.pump();
  }

  /** Election safety is checked on volatile state, after every event that touches the node. */
  private observe(): void {
    // The raft's fields, not status(): this runs after every event and status() copies.
    const raft = this.rn!.raft;
    const s = { raftState: raft.state, term: raft.term };
    if (s.raftState === StateType.Leader) {
      this.env.checker.observeLeader(this.id, s.term);
      if (this.lastRole !== StateType.Leader || this.lastTerm !== s.term) {
        this.completenessTerm = s.term;
        this.commitAtElection = raft.log.committed;
        this.env.onLeaderElected(this.id, s.term);
      } else if (this.commitAtElection >= 0 && raft.log.committed > this.commitAtElection) {
        this.commitAtElection = -1;
        this.env.onLeaderFirstCommit(this.id, s.term);
      }
    }
    if (s.raftState !== this.lastRole || s.term !== this.lastTerm) {
      this.env.trace.mix(TRACE_ROLE, this.id, s.raftState, s.term);
      if (this.env.trace.enabled && s.raftState !== this.lastRole) {
        this.env.trace.line(
          this.env.queue.nowMs,
          `n${this.id} ${['follower', 'candidate', 'leader', 'pre-candidate'][s.raftState]} term=${s.term}`,
        );
      }
      this.lastRole = s.raftState;
      this.lastTerm = s.term;
    }
  }

  private pump(): void {
    const rn = this.rn;
    if (rn === null || this.readyInFlight || !rn.hasReady()) return;
    const rd = rn.ready();
    this.readiesCount++;
    this.readyInFlight = true;
    if (this.completenessTerm !== 0) {
      const r = rn.raft;
      if (r.state === StateType.Leader && r.term === this.completenessTerm) {
        this.env.checker.checkLeaderLog(this.id, r.term, this.storage, rd.entries);
      }
      this.completenessTerm = 0;
    }
    const epoch = this.epoch;
    // A leader's appends travel while its own write runs (Ready.messagesNow).
    for (const msg of rd.messagesNow) this.env.network.send(msg.from, msg.to, msg);
    if (rd.hardState === null && rd.entries.length === 0 && rd.snapshot === null) {
      this.finish(rd, epoch);
    } else {
      this.disk.write(
        () => this.persist(rd),
        () => this.finish(rd, epoch),
      );
    }
  }

  private persist(rd: Ready): void {
    const checker = this.env.checker;
    if (rd.snapshot !== null) {
      const index = rd.snapshot.metadata.index;
      checker.beforeDiscard(this.id, this.storage, index + 1, `installing a snapshot at ${index}`);
      this.storage.applySnapshot(rd.snapshot);
    }
    if (rd.entries.length > 0) {
      checker.beforeAppend(this.id, this.storage, rd.entries);
      this.storage.append(rd.entries);
    }
    if (rd.hardState !== null) this.storage.setHardState(rd.hardState);
    const hs = this.storage.initialState().hardState;
    // A snapshot is saved with an fsync (which also flushes the earlier unsynced writes).
    const synced = rd.mustSync || rd.snapshot !== null;
    if (synced) this.syncedHardState = hs;
    checker.onPersist(
      this.id,
      this.storage,
      rd.snapshot,
      rd.entries.filter((e) => e.index >= this.storage.firstIndex()),
      rd.hardState === null ? null : hs.commit,
      hs.term,
      synced,
    );
    this.env.trace.mix(
      TRACE_PERSIST,
      this.id,
      this.storage.lastIndex(),
      hs.term,
      hs.vote,
      hs.commit,
    );
  }

  private finish(rd: Ready, epoch: number): void {
    assert(epoch === this.epoch && this.rn !== null, 'a Ready finished after a crash');
    const env = this.env;
    let voted = false;
    for (const msg of rd.messages) {
      env.network.send(msg.from, msg.to, msg);
      if (msg.type === MessageType.VoteResp && !msg.reject) voted = true;
    }
    if (rd.snapshot !== null) {
      const meta = rd.snapshot.metadata;
      this.sm.restore(meta.index, rd.snapshot.data, meta.confState);
      env.checker.onRestore(this.id, meta.index, this.sm.chain);
    }
    for (const entry of rd.committedEntries) this.apply(entry);
    if (rd.readStates.length > 0) this.readsWaiting.push(...rd.readStates);
    this.serveReads();
    this.rn.advance(rd);
    this.readyInFlight = false;
    this.maybeSnapshot();
    if (this.inbox.length > 0) {
      const inbox = this.inbox;
      this.inbox = [];
      for (const msg of inbox) this.step(msg);
    }
    if (voted) env.onVoteGranted(this.id);
    if (this.rn !== null) this.afterEvent();
  }

  private apply(entry: Entry): void {
    if (entry.index <= this.sm.appliedIndex) return; // covered by a snapshot just restored
    this.sm.apply(entry);
    this.env.checker.onApply(this.id, entry, this.sm.chain);
    this.env.trace.mix(TRACE_APPLY, this.id, entry.index, entry.term);
    if (entry.type === EntryType.ConfChange) {
      const cc = decodeConfChange(entry.data);
      let confState: ConfState | null = null;
      try {
        confState = this.rn!.applyConfChange(cc);
      } catch (error) {
        if (!(error instanceof RaftError)) throw error;
        if (this.env.trace.enabled) {
          this.env.trace.line(
            this.env.queue.nowMs,
            `n${this.id} conf change ${entry.index}: ${error.message}`,
          );
        }
      }
      if (confState !== null) {
        this.sm.confState = confState;
        // A restarted RawNode takes its configuration from the storage's snapshot, and in
        // 'durable' mode it restarts past this entry (applied > snapshot index): the snapshot
        // must carry the configuration this entry produced (see FINDINGS.md, integration note).
        if (this.env.params.applyMode === 'durable') this.snapshotNow();
      }
      this.env.onConfApplied(this.id, entry.index, cc, confState);
    } else if (entry.data.length > 0) {
      this.env.onApplied(this.id, entry);
    }
  }

  private serveReads(): void {
    if (this.readsWaiting.length === 0) return;
    const waiting: ReadState[] = [];
    for (const rs of this.readsWaiting) {
      if (rs.index <= this.sm.appliedIndex) this.env.onReadServed(this.id, rs.requestCtx, rs.index);
      else waiting.push(rs);
    }
    this.readsWaiting = waiting;
  }

  private maybeSnapshot(): void {
    const every = this.env.params.snapshotEveryEntries;
    if (every === 0) return;
    if (this.sm.appliedIndex - this.storage.snapshot().metadata.index < every) return;
    this.snapshotNow();
    const compactTo = this.sm.appliedIndex - this.env.params.compactKeepEntries;
    if (compactTo >= this.storage.firstIndex()) this.storage.compact(compactTo);
  }

  private snapshotNow(): void {
    if (this.sm.appliedIndex <= this.storage.snapshot().metadata.index) return;
    this.storage.createSnapshot(this.sm.appliedIndex, this.sm.confState, this.sm.image());
    if (this.env.trace.enabled) {
      const cs = this.sm.confState;
      this.env.trace.line(
        this.env.queue.nowMs,
        `n${this.id} snapshot at ${this.sm.appliedIndex} (voters=${cs.voters.join(',')}` +
          `${cs.votersOutgoing.length > 0 ? ` outgoing=${cs.votersOutgoing.join(',')}` : ''}` +
          `${cs.learners.length > 0 ? ` learners=${cs.learners.join(',')}` : ''})`,
      );
    }
    // Saving the snapshot syncs, flushing the unsynced hard state written before it.
    this.syncedHardState = this.storage.initialState().hardState;
  }
}
