/**
 * RawNode: the synchronous API of the Raft core (etcd-io/raft rawnode.go, v3.5 Ready/Advance).
 *
 * The caller loop, in this order (see `Ready` in types.ts):
 *
 *   while (node.hasReady()) {
 *     const rd = node.ready();
 *     send rd.messagesNow                            (a leader's appends, while it writes)
 *     persist rd.hardState, rd.entries, rd.snapshot   (storage.append / applySnapshot / setHardState)
 *     send rd.messages                               (only after the write is durable)
 *     apply rd.snapshot, then rd.committedEntries    (applyConfChange for ConfChange entries)
 *     node.advance(rd);
 *   }
 *
 * Storage writes go to `config.storage` (a MemoryStorage or a cache in front of the WAL): the core
 * reads back from it after advance. Errors: proposals and reads that cannot be accepted throw a
 * RaftError with the known leader as a hint; network messages never throw except STEP_LOCAL_MSG.
 *
 * Bootstrap (see RawNode.bootstrap): the initial configuration is a snapshot at index 1, term 1,
 * with empty data, so all founding members share log entry 1 and the application starts at
 * applied index 1 with an empty state. Members added later start with an empty MemoryStorage
 * (no bootstrap) and receive a snapshot from the leader.
 */
import { assert } from '../util/assert.js';
import { encodeConfChange } from './codec.js';
import { RaftError } from './errors.js';
import { newMessage, Raft } from './raft.js';
import type { MemoryStorage } from './storage.js';
import { PROGRESS_STATE_NAMES } from './tracker/progress.js';
import { compareIds } from './tracker/tracker.js';
import {
  type ConfChange,
  type ConfState,
  EMPTY_HARD_STATE,
  type Entry,
  EntryType,
  type HardState,
  LOCAL_MESSAGE_TYPES,
  MESSAGE_TYPE_NAMES,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type ProgressStatus,
  type RaftConfig,
  type RaftStatus,
  type Ready,
  type SoftState,
  StateType,
} from './types.js';

const EMPTY_BYTES = new Uint8Array(0);

function isResponse(type: MessageType): boolean {
  return (
    type === MessageType.AppResp ||
    type === MessageType.VoteResp ||
    type === MessageType.HeartbeatResp ||
    type === MessageType.PreVoteResp
  );
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

export class RawNode {
  /** The state machine; exposed for tests and the simulator's invariant checks (read only). */
  readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  /** The Ready handed out and not yet advanced, with the true hard state it reflects. */
  private outstanding: { ready: Ready; hardState: HardState } | null = null;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoftState = this.raft.softState();
    this.prevHardState = this.raft.hardState();
  }

  /**
   * Writes the initial configuration of a new cluster into empty `storage`: a snapshot at
   * index 1, term 1 whose ConfState has `voters`, and hard state {term 1, commit 1}. Every
   * founding member must be bootstrapped with the same voters.
   */
  static bootstrap(
    storage: MemoryStorage,
    voters: readonly NodeId[],
    data: Uint8Array = EMPTY_BYTES,
    learners: readonly NodeId[] = [],
  ): void {
    assert(voters.length > 0, 'bootstrap needs at least one voter');
    const all = [...voters, ...learners];
    assert(new Set(all).size === all.length, 'bootstrap voters and learners must be distinct');
    for (const id of all) assert(Number.isSafeInteger(id) && id > 0, `bad member id ${id}`);
    assert(
      storage.lastIndex() === 0 && storage.snapshot().metadata.index === 0,
      'storage not empty',
    );
    const { hardState } = storage.initialState();
    assert(hardStateEqual(hardState, EMPTY_HARD_STATE), 'storage has a hard state already');
    const confState: ConfState = {
      voters: [...voters].sort(compareIds),
      learners: [...learners].sort(compareIds),
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    };
    storage.applySnapshot({ metadata: { index: 1, term: 1, confState }, data });
    storage.setHardState({ term: 1, vote: NONE, commit: 1 });
  }

  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (with PreVote if configured). */
  campaign(): void {
    this.raft.step(newMessage({ type: MessageType.Hup, from: this.raft.id }));
  }

  /** Proposes a command; throws RaftError PROPOSAL_DROPPED (leader hint in `.leader`). */
  propose(data: Uint8Array): void {
    this.proposeEntry({ term: 0, index: 0, type: EntryType.Normal, data });
  }

  /**
   * Proposes a membership change; it takes effect when applied (applyConfChange). A leader
   * refuses it at once when another change is pending (PROPOSAL_DROPPED) or it cannot apply
   * (INVALID_CONF_CHANGE); a follower forwards it and the leader neutralizes it if refused.
   */
  proposeConfChange(cc: ConfChange): void {
    const r = this.raft;
    if (r.state === StateType.Leader) {
      const refusal = r.confChangeRefusal(cc);
      if (refusal !== null) throw new RaftError(refusal.code, refusal.reason, r.lead);
    }
    this.proposeEntry({
      term: 0,
      index: 0,
      type: EntryType.ConfChange,
      data: encodeConfChange(cc),
    });
  }

  private proposeEntry(entry: Entry): void {
    const r = this.raft;
    const code = r.step(newMessage({ type: MessageType.Prop, from: r.id, entries: [entry] }));
    if (code !== null) {
      throw new RaftError(code, `proposal dropped by ${r.id} (leader ${r.lead})`, r.lead);
    }
  }

  /** Steps a message received from the network. Throws only STEP_LOCAL_MSG. */
  step(m: Message): void {
    if (LOCAL_MESSAGE_TYPES.has(m.type)) {
      throw new RaftError(
        'STEP_LOCAL_MSG',
        `cannot step local message ${MESSAGE_TYPE_NAMES[m.type]}`,
      );
    }
    // A response from a peer we do not track (e.g. removed) carries nothing we can use.
    if (isResponse(m.type) && !this.raft.tracker.progress.has(m.from)) return;
    // A forwarded proposal or read the leader drops is lost; its originator times out.
    this.raft.step(m);
  }

  /**
   * Requests a linearizable read; a ReadState with `ctx` appears in a later Ready. `ctx` must be
   * unique among pending reads. Throws READ_INDEX_DROPPED when there is no leader or too many
   * reads are pending.
   */
  readIndex(ctx: Uint8Array): void {
    const r = this.raft;
    const code = r.step(newMessage({ type: MessageType.ReadIndex, from: r.id, context: ctx }));
    if (code !== null) throw new RaftError(code, `read index dropped by ${r.id}`, r.lead);
  }

  /** Asks the leader to hand leadership to `to` (forwarded if we are a follower). */
  transferLeader(to: NodeId): void {
    this.raft.step(newMessage({ type: MessageType.TransferLeader, from: to }));
  }

  /** The application applied a ConfChange entry: switch configuration. Returns the new one. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /** The transport could not reach `id`: stop optimistic replication to it. */
  reportUnreachable(id: NodeId): void {
    this.raft.step(newMessage({ type: MessageType.Unreachable, from: id }));
  }

  /**
   * The transport saw `id`'s process go away (its addresses refuse connections). A follower of
   * `id` stops waiting for the election timeout: see Raft.leaderDown.
   */
  reportPeerDown(id: NodeId): void {
    this.raft.leaderDown(id);
  }

  /** The snapshot sent to `id` was delivered (`ok`) or failed. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step(newMessage({ type: MessageType.SnapStatus, from: id, reject: !ok }));
  }

  /** True if the leader holds a CheckQuorum lease: lease-based reads are allowed. */
  leaseValid(): boolean {
    return this.raft.leaseValid();
  }

  /** The tick the leader's lease began at, or null without one (Raft.leaseStartTick). */
  leaseStartTick(): number | null {
    return this.raft.leaseStartTick();
  }

  /** Ticks since this node started. */
  get ticks(): number {
    return this.raft.ticks;
  }

  hasReady(): boolean {
    const r = this.raft;
    if (r.lead !== this.prevSoftState.lead || r.state !== this.prevSoftState.raftState) return true;
    const hs = this.prevHardState;
    if (r.term !== hs.term || r.vote !== hs.vote || r.log.committed !== hs.commit) return true;
    if (r.log.hasPendingSnapshot()) return true;
    if (r.msgs.length > 0 || r.log.unstable.entries.length > 0) return true;
    if (r.log.hasNextCommittedEntries()) return true;
    return r.readStates.length > 0;
  }

  ready(): Ready {
    assert(this.outstanding === null, 'ready() called again before advance()');
    const r = this.raft;
    const soft = r.softState();
    const softChanged =
      soft.lead !== this.prevSoftState.lead || soft.raftState !== this.prevSoftState.raftState;
    const hard = r.hardState();
    const hardChanged = !hardStateEqual(hard, this.prevHardState);
    const entries = r.log.unstableEntries();
    const committedEntries = r.log.nextCommittedEntries();
    // BUG forget-vote: the persisted hard state never carries the vote.
    const persistedHard = hardChanged && r.bugForgetVote ? { ...hard, vote: NONE } : hard;
    const termVoteDurable =
      hard.term === this.prevHardState.term && hard.vote === this.prevHardState.vote;
    // BUG ack-before-durable: everything leaves at once, acknowledgements and votes too.
    const { now, afterPersist } = r.bugAckBeforeDurable
      ? { now: r.msgs, afterPersist: [] }
      : splitMessages(r.msgs, r.state, termVoteDurable);
    const ready: Ready = {
      softState: softChanged ? soft : null,
      hardState: hardChanged ? persistedHard : null,
      readStates: r.readStates,
      entries,
      snapshot: r.log.unstable.snapshot,
      committedEntries,
      messagesNow: now,
      messages: afterPersist,
      mustSync: entries.length > 0 || !termVoteDurable,
    };
    // Accept the Ready: what it carries is no longer pending.
    if (softChanged) this.prevSoftState = soft;
    r.msgs = [];
    r.readStates = [];
    if (committedEntries.length > 0) {
      r.log.applyingTo(committedEntries[committedEntries.length - 1]!.index);
    }
    this.outstanding = { ready, hardState: hard };
    return ready;
  }

  /** The caller persisted, sent and applied `rd`. */
  advance(rd: Ready): void {
    const outstanding = this.outstanding;
    assert(outstanding !== null && outstanding.ready === rd, 'advance() without its ready()');
    this.outstanding = null;
    const r = this.raft;
    if (rd.hardState !== null) this.prevHardState = outstanding.hardState;
    r.reduceUncommittedBytes(rd.committedEntries);
    const n = rd.committedEntries.length;
    const newApplied =
      n > 0 ? rd.committedEntries[n - 1]!.index : (rd.snapshot?.metadata.index ?? 0);
    if (newApplied > 0) {
      const oldApplied = r.log.applied;
      r.log.appliedTo(newApplied);
      r.maybeAutoLeaveJoint(oldApplied, newApplied);
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      r.log.stableTo(last.index, last.term);
      r.persistedTo(last.index, last.term);
    }
    if (rd.snapshot !== null) r.log.stableSnapTo(rd.snapshot.metadata.index);
    r.checkInvariants();
  }

  status(): RaftStatus {
    const r = this.raft;
    const progress = new Map<NodeId, ProgressStatus>();
    if (r.state === StateType.Leader) {
      for (const id of r.tracker.ids) {
        const pr = r.tracker.progress.get(id)!;
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: PROGRESS_STATE_NAMES[pr.state] as ProgressStatus['state'],
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
          inflightMsgs: pr.inflights.size,
          pendingSnapshot: pr.pendingSnapshot,
        });
      }
    }
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      lead: r.lead,
      raftState: r.state,
      leadTransferee: r.leadTransferee,
      config: r.tracker.confState(),
      progress,
    };
  }
}

/** Leader messages that may leave before the Ready's write (see Ready.messagesNow). */
const SENT_BEFORE_PERSIST: ReadonlySet<MessageType> = new Set([
  MessageType.App,
  MessageType.Heartbeat,
  MessageType.Snap,
]);

/**
 * A leader whose term and vote are already durable sends its appends, heartbeats and snapshots
 * at once: they assert nothing about its own unwritten state. Everything else (and everything
 * of a node whose term or vote is in this very write) waits for the write.
 */
function splitMessages(
  msgs: readonly Message[],
  state: StateType,
  termVoteDurable: boolean,
): { now: Message[]; afterPersist: Message[] } {
  if (state !== StateType.Leader || !termVoteDurable || msgs.length === 0) {
    return { now: [], afterPersist: msgs as Message[] };
  }
  const now: Message[] = [];
  const afterPersist: Message[] = [];
  for (const m of msgs) (SENT_BEFORE_PERSIST.has(m.type) ? now : afterPersist).push(m);
  return { now, afterPersist };
}
