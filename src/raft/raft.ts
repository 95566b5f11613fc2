/**
 * The Raft state machine (etcd-io/raft raft.go, v3.5 semantics): roles, elections, replication,
 * reads, membership and leadership transfer. Pure and synchronous: it only appends to `msgs`,
 * `readStates` and the unstable log; RawNode turns that into a Ready.
 *
 * Section references: "paper" = Ongaro & Ousterhout, In Search of an Understandable Consensus
 * Algorithm (2014); "thesis" = Ongaro, Consensus: Bridging Theory and Practice (2014).
 *
 * Injected bugs (simulator only; each is one guarded branch, grep `bug`):
 *   commit-old-term     LOG.maybeCommit skips the "entry of the current term" check (paper §5.4.2).
 *   forget-vote         RawNode.ready reports vote NONE in hardState, so the vote is never
 *                       persisted; in memory the node still behaves as having voted.
 *   stale-read          the leader answers ReadIndex at once from its commit index, without the
 *                       heartbeat round and even before it committed an entry of its term.
 *   skip-log-check      a follower accepts MsgApp without the prev index/term match (paper §5.3).
 *   probe-never-resumes liveness: a heartbeat response does not unpause a probing follower, so a
 *                       lost probe (or its lost answer) stalls that follower until the next
 *                       election; with one voter down, a 3-voter cluster stops committing.
 */
import { assert } from '../util/assert.js';
import { bytesEqual } from '../util/bytes.js';
import type { Random } from '../util/prng.js';
import { decodeConfChange } from './codec.js';
import {
  applyChange,
  isLeaveJoint,
  jointMode,
  restore as restoreConfig,
} from './confchange/confchange.js';
import type { RaftErrorCode } from './errors.js';
import { RaftLog } from './log.js';
import { jointVoteResult } from './quorum/joint.js';
import { VoteResult } from './quorum/majority.js';
import { ReadOnly } from './read-only.js';
import type { Progress } from './tracker/progress.js';
import { ProgressState } from './tracker/progress.js';
import { isJoint, ProgressTracker, type TrackerConfig } from './tracker/tracker.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type RaftConfig,
  type RaftLogger,
  ReadOnlyOption,
  type ReadState,
  type Snapshot,
  type SoftState,
  StateType,
} from './types.js';

const EMPTY_BYTES = new Uint8Array(0);
const NO_ENTRIES: readonly Entry[] = Object.freeze([]);
/** Vote context marking a leadership-transfer campaign: it overrides the followers' lease. */
export const CAMPAIGN_TRANSFER_CONTEXT = new TextEncoder().encode('CampaignTransfer');

type MutableMessage = { -readonly [K in keyof Message]: Message[K] };
/** What a step returns: null, or the code of the error the caller should raise. */
export type StepResult = RaftErrorCode | null;

const CampaignKind = { PreElection: 0, Election: 1, Transfer: 2 } as const;
type CampaignKind = (typeof CampaignKind)[keyof typeof CampaignKind];

/** Builds a message with every field present (one hidden class for all messages). */
export function newMessage(init: Partial<Message> & Pick<Message, 'type'>): MutableMessage {
  return {
    type: init.type,
    to: init.to ?? NONE,
    from: init.from ?? NONE,
    term: init.term ?? 0,
    logTerm: init.logTerm ?? 0,
    index: init.index ?? 0,
    entries: init.entries ?? NO_ENTRIES,
    commit: init.commit ?? 0,
    snapshot: init.snapshot ?? null,
    reject: init.reject ?? false,
    rejectHint: init.rejectHint ?? 0,
    context: init.context ?? EMPTY_BYTES,
  };
}

function voteResponseType(type: MessageType): MessageType {
  return type === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
}

function payloadBytes(ents: readonly Entry[]): number {
  let bytes = 0;
  for (let i = 0; i < ents.length; i++) bytes += ents[i]!.data.length;
  return bytes;
}

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  state: StateType = StateType.Follower;
  isLearner = false;
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;
  /** Outbound messages, handed out (and cleared) by RawNode.ready. */
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  /** The voter the leader is handing over to, or NONE. */
  leadTransferee: NodeId = NONE;
  /** Index of the latest conf change proposed; a new one is refused until it is applied. */
  pendingConfIndex = 0;
  /** Bytes of entry data appended by this leader and not yet applied (maxUncommittedBytes). */
  uncommittedBytes = 0;
  readonly readOnly = new ReadOnly();
  /** ReadIndex requests received before this leader committed an entry of its term. */
  pendingReadIndexMessages: Message[] = [];

  electionElapsedTicks = 0;
  heartbeatElapsedTicks = 0;
  /** Ticks since construction; the leader stamps heartbeats with it for the lease. */
  ticks = 0;
  randomizedElectionTicks = 0;
  /**
   * After a restart we cannot know whether we had granted a leader its lease, so under
   * CheckQuorum we treat ourselves as in a lease until an election timeout has passed.
   */
  private leaseUnknown = true;
  /** The term in which this leader sent TimeoutNow: its lease is void for the rest of it. */
  private leaseForfeitedTerm = 0;
  /** The voter a removed or demoted leader last handed over to (handOver rotates from it). */
  private handOverTarget: NodeId = NONE;
  /**
   * Leader tick of the first heartbeat that told the transferee our whole commit index, or -1;
   * once a later one is acknowledged, the transferee knows it (a leader outside the voters waits
   * for that before TimeoutNow: see handOver).
   */
  private transfereeToldTick = -1;
  private transfereeKnowsCommit = false;

  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly maxMsgBytes: number;
  readonly maxUncommittedBytes: number;
  readonly maxPendingReads: number;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly readOnlyOption: ReadOnlyOption;
  readonly disableProposalForwarding: boolean;
  private readonly random: Random;
  private readonly logger: RaftLogger | undefined;

  // Injected bugs as booleans: the hot paths test a field, not a Set.
  readonly bugCommitOldTerm: boolean;
  readonly bugForgetVote: boolean;
  readonly bugStaleRead: boolean;
  readonly bugSkipLogCheck: boolean;
  readonly bugProbeNeverResumes: boolean;
  readonly bugAckBeforeDurable: boolean;

  /** The role's tick and step functions, swapped by becomeX (etcd's r.tick / r.step). */
  private tickRole: () => void;
  private stepRole: (m: Message) => StepResult;
  private readonly tickElectionFn = (): void => this.tickElection();
  private readonly tickHeartbeatFn = (): void => this.tickHeartbeat();
  private readonly stepFollowerFn = (m: Message): StepResult => this.stepFollower(m);
  private readonly stepCandidateFn = (m: Message): StepResult => this.stepCandidate(m);
  private readonly stepLeaderFn = (m: Message): StepResult => this.stepLeader(m);

  constructor(config: RaftConfig) {
    validateConfig(config);
    this.id = config.id;
    this.electionTicks = config.electionTicks;
    this.heartbeatTicks = config.heartbeatTicks;
    this.maxMsgBytes = config.maxMsgBytes;
    this.maxUncommittedBytes = config.maxUncommittedBytes;
    this.maxPendingReads = config.maxPendingReads;
    this.checkQuorum = config.checkQuorum;
    this.preVote = config.preVote;
    this.readOnlyOption = config.readOnlyOption;
    this.disableProposalForwarding = config.disableProposalForwarding;
    this.random = config.random;
    this.logger = config.logger;
    const bugs = config.bugs;
    this.bugCommitOldTerm = bugs?.has('commit-old-term') ?? false;
    this.bugForgetVote = bugs?.has('forget-vote') ?? false;
    this.bugStaleRead = bugs?.has('stale-read') ?? false;
    this.bugSkipLogCheck = bugs?.has('skip-log-check') ?? false;
    this.bugProbeNeverResumes = bugs?.has('probe-never-resumes') ?? false;
    this.bugAckBeforeDurable = bugs?.has('ack-before-durable') ?? false;

    this.log = new RaftLog(config.storage, config.maxCommittedBytesPerReady);
    this.tracker = new ProgressTracker(config.maxInflightMsgs);
    const { hardState, confState } = config.storage.initialState();
    this.installConfig(
      restoreConfig(
        {
          config: this.tracker.config,
          progress: this.tracker.progress,
          lastIndex: this.log.lastIndex(),
          maxInflightMsgs: config.maxInflightMsgs,
        },
        confState,
      ),
    );
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) {
      this.loadHardState(hardState);
    }
    if (config.applied > 0) this.log.appliedTo(Math.max(config.applied, this.log.applied));
    this.tickRole = this.tickElectionFn;
    this.stepRole = this.stepFollowerFn;
    this.becomeFollower(this.term, NONE);
    this.leaseUnknown = true;
  }

  private loadHardState(hs: HardState): void {
    assert(
      hs.commit >= this.log.committed && hs.commit <= this.log.lastIndex(),
      `hard state commit ${hs.commit} out of [${this.log.committed}, ${this.log.lastIndex()}]`,
    );
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { lead: this.lead, raftState: this.state };
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  /** Queues `m`, stamping `from` and the term (etcd's raft.send). */
  private send(m: MutableMessage): void {
    m.from = this.id;
    const t = m.type;
    if (
      t === MessageType.Vote ||
      t === MessageType.VoteResp ||
      t === MessageType.PreVote ||
      t === MessageType.PreVoteResp
    ) {
      // Campaign messages carry their own term: a pre-vote uses the term it would campaign in.
      assert(m.term !== 0, `term must be set for ${t}`);
    } else {
      assert(m.term === 0, `term must not be set for ${t}`);
      // Forwarded proposals and reads are local-ish: they carry no term (etcd does the same).
      if (t !== MessageType.Prop && t !== MessageType.ReadIndex) m.term = this.term;
    }
    this.msgs.push(m);
  }

  /** Sends an append (or a snapshot) to `to` if its progress allows; true if one was sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to)!;
    if (pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const ents = this.log.entriesFrom(pr.next, this.maxMsgBytes);
    if (ents !== undefined && ents.length === 0 && !sendIfEmpty) return false;
    if (prevTerm === undefined || ents === undefined) return this.maybeSendSnapshot(to, pr);
    const m = newMessage({
      type: MessageType.App,
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: this.log.committed,
    });
    const n = ents.length;
    if (n !== 0) {
      if (pr.state === ProgressState.Replicate) {
        const last = ents[n - 1]!.index;
        pr.optimisticUpdate(last);
        pr.inflights.add(last);
      } else {
        assert(pr.state === ProgressState.Probe, 'sending append to a follower in snapshot state');
        pr.probeSent = true;
      }
    }
    this.send(m);
    return true;
  }

  /** The entries `to` needs are compacted: send the storage snapshot (thesis §5.1). */
  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    // Do not ship a snapshot to a peer that may be down; wait until it answers again.
    if (!pr.recentActive) return false;
    const snapshot = this.log.snapshot();
    assert(snapshot.metadata.index > 0, 'need a non-empty snapshot');
    pr.becomeSnapshot(snapshot.metadata.index);
    this.send(newMessage({ type: MessageType.Snap, to, snapshot }));
    return true;
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  private sendHeartbeat(to: NodeId, context: Uint8Array): void {
    // A follower may not have the leader's commit index in its log yet: send at most its match.
    const commit = Math.min(this.tracker.progress.get(to)!.match, this.log.committed);
    if (
      to === this.leadTransferee &&
      this.transfereeToldTick < 0 &&
      commit === this.log.committed
    ) {
      this.transfereeToldTick = this.ticks;
    }
    // `index` carries the leader's tick; the follower echoes it so the lease can be measured
    // from when the heartbeat was sent (see leaseValid).
    this.send(newMessage({ type: MessageType.Heartbeat, to, commit, context, index: this.ticks }));
  }

  private bcastAppend(): void {
    const ids = this.tracker.ids;
    for (let i = 0; i < ids.length; i++) if (ids[i] !== this.id) this.sendAppend(ids[i]!);
  }

  private bcastHeartbeat(): void {
    const context = this.readOnly.lastPendingContext() ?? EMPTY_BYTES;
    this.bcastHeartbeatWithContext(context);
  }

  private bcastHeartbeatWithContext(context: Uint8Array): void {
    const ids = this.tracker.ids;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] !== this.id) this.sendHeartbeat(ids[i]!, context);
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    // The transferee may win at any later moment (the message may be delayed), and responses
    // our followers sent before its vote request prove nothing: no lease for the rest of this
    // term (simulator finding 4; ReadIndex with its heartbeat round stays safe).
    this.leaseForfeitedTerm = this.term;
    this.send(newMessage({ type: MessageType.TimeoutNow, to }));
  }

  // -------------------------------------------------------------------------------------------
  // Role transitions (paper figure 4)

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsedTicks = 0;
    this.heartbeatElapsedTicks = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.tracker.resetVotes();
    const lastIndex = this.log.lastIndex();
    for (const [id, pr] of this.tracker.progress) {
      pr.resetForTerm(lastIndex);
      // This node holds durably what is not in the unstable log (see persistedTo).
      if (id === this.id) pr.match = Math.min(lastIndex, this.log.unstable.offset - 1);
    }
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.readOnly.clear();
    this.pendingReadIndexMessages = [];
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.stepRole = this.stepFollowerFn;
    this.reset(term);
    this.tickRole = this.tickElectionFn;
    this.lead = lead;
    this.state = StateType.Follower;
    this.leaseUnknown = false;
    this.logger?.info(`${this.id} became follower at term ${this.term}, leader ${lead}`);
  }

  becomeCandidate(): void {
    assert(this.state !== StateType.Leader, 'invalid transition [leader -> candidate]');
    this.stepRole = this.stepCandidateFn;
    this.reset(this.term + 1);
    this.tickRole = this.tickElectionFn;
    this.vote = this.id;
    this.state = StateType.Candidate;
    this.leaseUnknown = false;
    this.logger?.info(`${this.id} became candidate at term ${this.term}`);
  }

  becomePreCandidate(): void {
    assert(this.state !== StateType.Leader, 'invalid transition [leader -> pre-candidate]');
    // A pre-candidate keeps its term and vote: a failed pre-election disrupts nobody (thesis §9.6).
    this.stepRole = this.stepCandidateFn;
    this.tracker.resetVotes();
    this.tickRole = this.tickElectionFn;
    this.lead = NONE;
    this.state = StateType.PreCandidate;
    this.leaseUnknown = false;
    this.logger?.info(`${this.id} became pre-candidate at term ${this.term}`);
  }

  becomeLeader(): void {
    assert(this.state !== StateType.Follower, 'invalid transition [follower -> leader]');
    assert(this.state !== StateType.PreCandidate, 'invalid transition [pre-candidate -> leader]');
    this.stepRole = this.stepLeaderFn;
    this.reset(this.term);
    this.tickRole = this.tickHeartbeatFn;
    this.lead = this.id;
    this.state = StateType.Leader;
    const self = this.tracker.progress.get(this.id)!;
    self.becomeReplicate();
    self.recentActive = true;
    // Conservatively assume an unapplied conf change may sit in the log: refuse new ones until
    // everything we have is applied (this also triggers auto-leave of a joint config we inherit).
    this.pendingConfIndex = this.log.lastIndex();
    // Paper §5.4.2 / thesis §6.4: an empty entry of our term lets us commit, and so learn the
    // commit index, which ReadIndex needs.
    const empty: Entry = { term: 0, index: 0, type: EntryType.Normal, data: EMPTY_BYTES };
    assert(this.appendEntries([empty]), 'empty entry must be accepted');
    this.logger?.info(`${this.id} became leader at term ${this.term}`);
  }

  private resetRandomizedElectionTimeout(): void {
    // Paper §5.2: randomized in [electionTicks, 2 * electionTicks) to split votes rarely.
    this.randomizedElectionTicks = this.electionTicks + this.random.int(this.electionTicks);
  }

  // -------------------------------------------------------------------------------------------
  // Ticks

  tick(): void {
    this.ticks++;
    this.tickRole();
  }

  private tickElection(): void {
    this.electionElapsedTicks++;
    if (this.electionElapsedTicks >= this.electionTicks) this.leaseUnknown = false;
    if (this.promotable() && this.electionElapsedTicks >= this.randomizedElectionTicks) {
      this.electionElapsedTicks = 0;
      this.step(newMessage({ type: MessageType.Hup, from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsedTicks++;
    this.electionElapsedTicks++;
    if (this.electionElapsedTicks >= this.electionTicks) {
      this.electionElapsedTicks = 0;
      if (this.checkQuorum) this.step(newMessage({ type: MessageType.CheckQuorum, from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned (thesis §3.10).
      if (this.state === StateType.Leader && this.leadTransferee !== NONE) {
        this.abortLeaderTransfer();
      }
      // A removed or demoted leader tries again, perhaps with another voter (see handOver).
      if (this.state === StateType.Leader && this.outsideVoters()) this.handOver();
    }
    if (this.state !== StateType.Leader) return;
    if (this.heartbeatElapsedTicks >= this.heartbeatTicks) {
      this.heartbeatElapsedTicks = 0;
      this.step(newMessage({ type: MessageType.Beat, from: this.id }));
    }
  }

  // -------------------------------------------------------------------------------------------
  // Stepping

  /** True if this node may campaign: a voter with no snapshot pending. */
  promotable(): boolean {
    const pr = this.tracker.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.log.hasPendingSnapshot();
  }

  /**
   * Fast failover: the application learned that the leader's process is gone (its addresses
   * refuse connections), so waiting out the election timeout only adds latency. A voter that
   * follows `id` forgets it — which also ends the lease it granted, so it may vote at once — and
   * campaigns after 1 + rank ticks, its rank among the other voters by id, so that followers that
   * learn it together do not split the vote. Election safety never depends on timing (§5.2);
   * lease reads do: they assume a leader whose connections are refused, and whose own connection
   * to us has closed, cannot be serving (true for a dead process; a firewall that rejects every
   * packet with RST/REJECT, instead of dropping, breaks it).
   */
  leaderDown(id: NodeId): void {
    if (id === NONE || this.state !== StateType.Follower || this.lead !== id) return;
    if (!this.promotable()) return; // a learner just waits for the next leader
    const rank = this.tracker.voterIds.filter((v) => v !== id).indexOf(this.id); // sorted
    assert(rank >= 0, 'a promotable follower is a voter');
    this.lead = NONE;
    this.electionElapsedTicks = Math.max(
      this.electionElapsedTicks,
      this.randomizedElectionTicks - 1 - rank,
    );
    this.logger?.info(
      `${this.id} lost leader ${id} (process gone); campaigning in ${rank + 1} ticks`,
    );
  }

  /** Under CheckQuorum, a follower that heard from a leader recently refuses to be disrupted. */
  private inLease(): boolean {
    return (
      this.checkQuorum &&
      (this.lead !== NONE || this.leaseUnknown) &&
      this.electionElapsedTicks < this.electionTicks
    );
  }

  step(m: Message): StepResult {
    if (m.term === 0) {
      // Local message (or a forwarded proposal/read): no term handling.
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = bytesEqual(m.context, CAMPAIGN_TRANSFER_CONTEXT);
        // Thesis §4.2.3: ignore a disruptive candidate while we believe a leader is alive.
        if (!force && this.inLease()) return null;
      }
      if (m.type === MessageType.PreVote) {
        // Never change our term in response to a pre-vote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries the term we would campaign in; stay put until we win.
      } else if (
        m.type === MessageType.App ||
        m.type === MessageType.Heartbeat ||
        m.type === MessageType.Snap
      ) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      this.stepLowerTerm(m);
      return null;
    }

    switch (m.type) {
      case MessageType.Hup:
        this.hup(this.preVote ? CampaignKind.PreElection : CampaignKind.Election);
        return null;
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return null;
      default:
        return this.stepRole(m);
    }
  }

  private stepLowerTerm(m: Message): void {
    if (m.type === MessageType.Heartbeat || m.type === MessageType.App) {
      // Paper §5.1 / figure 2: a stale-term request is answered with our term, so the stale
      // leader steps down and the next election brings everyone to a common term. Unlike etcd
      // we answer in every mode, not only under CheckQuorum or PreVote: a lagging member whose
      // configuration excludes the leader cannot raise the leader's term by campaigning
      // (simulator finding 5). The cost is one extra election, once per stale term: after it,
      // the new leader's term is at least ours.
      this.send(newMessage({ type: MessageType.AppResp, to: m.from }));
    } else if (m.type === MessageType.PreVote) {
      // Reject, so that a pre-candidate stuck in an old term learns ours.
      this.send(
        newMessage({ type: MessageType.PreVoteResp, to: m.from, term: this.term, reject: true }),
      );
    }
  }

  /** Paper §5.2 / §5.4.1: grant at most one vote per term, only to an up-to-date log. */
  private handleVoteRequest(m: Message): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === MessageType.PreVote && m.term > this.term);
    const responseType = voteResponseType(m.type);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // A response carries the term of the request so that a pre-candidate can match it.
      this.send(newMessage({ type: responseType, to: m.from, term: m.term }));
      if (m.type === MessageType.Vote) {
        this.electionElapsedTicks = 0;
        this.vote = m.from;
      }
    } else {
      this.send(newMessage({ type: responseType, to: m.from, term: this.term, reject: true }));
    }
  }

  private hup(kind: CampaignKind): void {
    if (this.state === StateType.Leader) return;
    if (!this.promotable()) return;
    // A committed but unapplied conf change may remove us: wait until it is applied.
    if (this.log.committed > this.log.applied && this.hasUnappliedConfChange()) return;
    this.campaign(kind);
  }

  private hasUnappliedConfChange(): boolean {
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    const ents = this.log.slice(lo, this.log.committed + 1, Number.POSITIVE_INFINITY);
    for (let i = 0; i < ents.length; i++) {
      if (ents[i]!.type === EntryType.ConfChange) return true;
    }
    return false;
  }

  private campaign(kind: CampaignKind): void {
    let term: number;
    let voteType: MessageType;
    if (kind === CampaignKind.PreElection) {
      this.becomePreCandidate();
      voteType = MessageType.PreVote;
      term = this.term + 1; // the pre-vote asks about the term we would campaign in
    } else {
      this.becomeCandidate();
      voteType = MessageType.Vote;
      term = this.term;
    }
    if (this.poll(this.id, true) === VoteResult.Won) {
      // Single-voter configuration: we won by our own vote.
      if (kind === CampaignKind.PreElection) this.campaign(CampaignKind.Election);
      else this.becomeLeader();
      return;
    }
    const context = kind === CampaignKind.Transfer ? CAMPAIGN_TRANSFER_CONTEXT : EMPTY_BYTES;
    const voters = this.tracker.voterIds;
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (let i = 0; i < voters.length; i++) {
      const id = voters[i]!;
      if (id === this.id) continue;
      this.send(
        newMessage({ type: voteType, to: id, term, index: lastIndex, logTerm: lastTerm, context }),
      );
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    this.tracker.recordVote(id, granted);
    return this.tracker.tallyVotes().result;
  }

  // ----- follower

  private stepFollower(m: Message): StepResult {
    switch (m.type) {
      case MessageType.Prop:
        if (this.lead === NONE || this.disableProposalForwarding) return 'PROPOSAL_DROPPED';
        this.forward(m);
        return null;
      case MessageType.App:
        this.electionElapsedTicks = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return null;
      case MessageType.Heartbeat:
        this.electionElapsedTicks = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return null;
      case MessageType.Snap:
        this.electionElapsedTicks = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return null;
      case MessageType.TransferLeader:
        if (this.lead !== NONE) this.forward(m);
        return null;
      case MessageType.TimeoutNow:
        // A transfer never uses pre-vote: the leader asked for it, nothing is partitioned.
        this.hup(CampaignKind.Transfer);
        return null;
      case MessageType.ReadIndex:
        if (this.lead === NONE) return 'READ_INDEX_DROPPED';
        this.forward(m);
        return null;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, requestCtx: m.context });
        return null;
      default:
        return null;
    }
  }

  private forward(m: Message): void {
    const copy = newMessage(m);
    copy.to = this.lead;
    copy.term = 0;
    this.send(copy);
  }

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      // Everything up to our commit index matches the leader's log (Log Matching): ack it.
      this.send(newMessage({ type: MessageType.AppResp, to: m.from, index: this.log.committed }));
      return;
    }
    const lastNewIndex = this.log.maybeAppend(
      m.index,
      m.logTerm,
      m.commit,
      m.entries,
      this.bugSkipLogCheck,
    );
    if (lastNewIndex >= 0) {
      this.send(newMessage({ type: MessageType.AppResp, to: m.from, index: lastNewIndex }));
      return;
    }
    // Reject with a hint (thesis §5.4.2 fast backtracking, etcd's findConflictByTerm): the
    // largest index whose term is <= the leader's prev term, and that term.
    const hintIndex = this.log.findConflictByTerm(
      Math.min(m.index, this.log.lastIndex()),
      m.logTerm,
    );
    this.send(
      newMessage({
        type: MessageType.AppResp,
        to: m.from,
        index: m.index,
        reject: true,
        rejectHint: hintIndex,
        logTerm: this.log.term(hintIndex) ?? 0,
      }),
    );
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(m.commit);
    this.send(
      newMessage({
        type: MessageType.HeartbeatResp,
        to: m.from,
        context: m.context,
        index: m.index,
      }),
    );
  }

  private handleSnapshot(m: Message): void {
    const snap = m.snapshot;
    if (snap === null) return;
    if (this.restore(snap)) {
      this.send(newMessage({ type: MessageType.AppResp, to: m.from, index: this.log.lastIndex() }));
    } else {
      this.send(newMessage({ type: MessageType.AppResp, to: m.from, index: this.log.committed }));
    }
  }

  /** Installs a leader's snapshot (thesis §5.1); false when it brings nothing new. */
  private restore(snap: Snapshot): boolean {
    const meta = snap.metadata;
    if (meta.index <= this.log.committed) return false;
    if (this.state !== StateType.Follower) {
      // Defensive (etcd does the same): only followers install snapshots.
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    const cs = meta.confState;
    const member =
      cs.voters.includes(this.id) ||
      cs.learners.includes(this.id) ||
      cs.votersOutgoing.includes(this.id);
    // A snapshot that does not list us is refused only while our own configuration lists us:
    // then meta.index > committed >= our addition, so it can only post-date our removal, and we
    // are never switched to a configuration without us. A member not (yet) in its configuration
    // accepts it (deviation from etcd, whose server ships fresh snapshots that always list the
    // peer): it predates our addition, which later entries apply (simulator finding 2).
    if (!member && this.tracker.progress.has(this.id)) return false;
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We already have the entries: just move the commit index (fast-forward).
      this.log.commitTo(meta.index);
      return false;
    }
    // Committed entries handed out in a Ready are not applied yet: switching the configuration
    // under them would apply their conf changes on the wrong base (simulator finding 6). Refuse;
    // the leader sends the snapshot again after its next probe.
    if (this.log.applying > this.log.applied) return false;
    this.log.restore(snap);
    this.tracker.setConfig(
      { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false },
      new Map(),
    );
    this.installConfig(
      restoreConfig(
        {
          config: this.tracker.config,
          progress: this.tracker.progress,
          lastIndex: this.log.lastIndex(),
          maxInflightMsgs: this.tracker.maxInflightMsgs,
        },
        cs,
      ),
    );
    const self = this.tracker.progress.get(this.id);
    self?.maybeUpdate(self.next - 1);
    return true;
  }

  // ----- candidate and pre-candidate

  private stepCandidate(m: Message): StepResult {
    const myResponseType =
      this.state === StateType.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    switch (m.type) {
      case MessageType.Prop:
        return 'PROPOSAL_DROPPED';
      case MessageType.ReadIndex:
        return 'READ_INDEX_DROPPED';
      case MessageType.App:
        this.becomeFollower(m.term, m.from); // a leader exists in our term
        this.handleAppendEntries(m);
        return null;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return null;
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return null;
      case myResponseType: {
        const result = this.poll(m.from, !m.reject);
        if (result === VoteResult.Won) {
          if (this.state === StateType.PreCandidate) {
            this.campaign(CampaignKind.Election);
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === VoteResult.Lost) {
          // Pre-candidates keep their term; candidates stay in theirs as followers.
          this.becomeFollower(this.term, NONE);
        }
        return null;
      }
      default:
        return null; // e.g. TimeoutNow: we are already campaigning
    }
  }

  // ----- leader

  private stepLeader(m: Message): StepResult {
    switch (m.type) {
      case MessageType.Beat:
        this.bcastHeartbeat();
        return null;
      case MessageType.CheckQuorum:
        this.checkQuorumActive();
        return null;
      case MessageType.Prop:
        return this.handleProposal(m);
      case MessageType.ReadIndex:
        return this.handleReadIndex(m);
      default:
        break;
    }
    const pr = this.tracker.progress.get(m.from);
    if (pr === undefined) return null;
    switch (m.type) {
      case MessageType.AppResp:
        pr.recentActive = true;
        if (m.reject) this.handleAppendRejection(m, pr);
        else this.handleAppendSuccess(m, pr);
        return null;
      case MessageType.HeartbeatResp:
        this.handleHeartbeatResponse(m, pr);
        return null;
      case MessageType.SnapStatus:
        if (pr.state !== ProgressState.Snapshot) return null;
        // Success or failure, probe next; on failure forget the snapshot so we retry it.
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for a heartbeat response before the next append: the follower may be slow.
        pr.probeSent = true;
        return null;
      case MessageType.Unreachable:
        // The last append may be lost: fall back to probing.
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        return null;
      case MessageType.TransferLeader:
        this.handleTransferLeader(m.from, pr);
        return null;
      default:
        return null;
    }
  }

  /** CheckQuorum (thesis §6.2): step down if a quorum was not heard from this election timeout. */
  private checkQuorumActive(): void {
    const self = this.tracker.progress.get(this.id);
    if (self !== undefined) self.recentActive = true;
    if (!this.tracker.quorumActive()) {
      this.logger?.warn(`${this.id} stepped down: quorum inactive`);
      this.becomeFollower(this.term, NONE);
    }
    for (const [id, pr] of this.tracker.progress) if (id !== this.id) pr.recentActive = false;
  }

  private handleProposal(m: Message): StepResult {
    assert(m.entries.length > 0, 'empty proposal');
    if (!this.tracker.progress.has(this.id)) return 'PROPOSAL_DROPPED'; // we were removed
    // Thesis §3.10: stop accepting proposals while handing leadership over.
    if (this.leadTransferee !== NONE) return 'PROPOSAL_DROPPED';
    let ents = m.entries;
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i]!;
      if (e.type !== EntryType.ConfChange) continue;
      if (this.refuseConfChange(e)) {
        // Keep the index sequence but neutralize the change (etcd does the same).
        if (ents === m.entries) ents = ents.slice();
        (ents as Entry[])[i] = { term: 0, index: 0, type: EntryType.Normal, data: EMPTY_BYTES };
      } else {
        this.pendingConfIndex = this.log.lastIndex() + i + 1;
      }
    }
    if (!this.appendEntries(ents)) return 'PROPOSAL_DROPPED';
    this.bcastAppend();
    return null;
  }

  private refuseConfChange(e: Entry): boolean {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch {
      return true;
    }
    return this.confChangeRefusal(cc) !== null;
  }

  /**
   * Why the leader would refuse `cc` now, or null: at most one membership change in flight
   * (thesis §4.1), a joint config must be left before anything else, and the change must apply
   * to the current configuration (a dry run of confchange).
   */
  confChangeRefusal(cc: ConfChange): { code: RaftErrorCode; reason: string } | null {
    if (this.pendingConfIndex > this.log.applied) {
      return { code: 'PROPOSAL_DROPPED', reason: 'a membership change is already pending' };
    }
    const alreadyJoint = isJoint(this.tracker.config);
    if (alreadyJoint && !isLeaveJoint(cc)) {
      return { code: 'INVALID_CONF_CHANGE', reason: 'must leave the joint config first' };
    }
    if (!alreadyJoint && isLeaveJoint(cc)) {
      return { code: 'INVALID_CONF_CHANGE', reason: 'not in a joint config' };
    }
    try {
      applyChange(this.changeBase(), cc);
      return null;
    } catch (err) {
      return {
        code: 'INVALID_CONF_CHANGE',
        reason: err instanceof Error ? err.message : String(err),
      };
    }
  }

  /** Appends entries of our term; false when maxUncommittedBytes refuses them. */
  private appendEntries(ents: readonly Entry[]): boolean {
    const lastIndex = this.log.lastIndex();
    const bytes = payloadBytes(ents);
    // Always accept an empty entry or the first entry, so a big proposal cannot get stuck.
    if (
      this.uncommittedBytes > 0 &&
      bytes > 0 &&
      this.uncommittedBytes + bytes > this.maxUncommittedBytes
    ) {
      return false;
    }
    this.uncommittedBytes += bytes;
    const stamped: Entry[] = new Array(ents.length);
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i]!;
      stamped[i] = { term: this.term, index: lastIndex + 1 + i, type: e.type, data: e.data };
    }
    this.log.append(stamped);
    // The leader counts its own entries once they are durable (persistedTo), not now: they may
    // reach followers first (Ready.messagesNow).
    this.maybeCommit();
    return true;
  }

  /**
   * The caller made this node's log durable up to `index` (of `term`; RawNode.advance): a leader
   * counts it toward commits now (thesis §10.2.1: its own write ran in parallel with the
   * followers'). An index whose entry was replaced meanwhile (another term) counts for nothing.
   */
  persistedTo(index: number, term: number): void {
    if (this.state !== StateType.Leader) return;
    if (index > this.log.lastIndex() || this.log.term(index) !== term) return;
    const self = this.tracker.progress.get(this.id);
    if (self === undefined || !self.maybeUpdate(index)) return;
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    }
  }

  /** Commits the quorum-replicated index if it is of our term (paper §5.4.2). */
  private maybeCommit(): boolean {
    return this.log.maybeCommit(this.tracker.committed(), this.term, this.bugCommitOldTerm);
  }

  private handleAppendRejection(m: Message, pr: Progress): void {
    // The follower told us its last index <= m.index whose term is <= m.logTerm... we find, in
    // our log, the last index whose term is <= that term: every index in between mismatches.
    let nextProbeIndex = m.rejectHint;
    if (m.logTerm > 0) nextProbeIndex = this.log.findConflictByTerm(m.rejectHint, m.logTerm);
    if (pr.maybeDecrTo(m.index, nextProbeIndex)) {
      if (pr.state === ProgressState.Replicate) pr.becomeProbe();
      this.sendAppend(m.from);
    }
  }

  private handleAppendSuccess(m: Message, pr: Progress): void {
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === ProgressState.Probe) {
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) {
      // The follower caught up past the snapshot (by the snapshot or by appends): stream.
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.Replicate) {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else if (wasPaused) {
      // The window opened: send what we held back.
      this.sendAppend(m.from);
    }
    // Fill the window (a follower catching up gets several appends at once).
    while (this.maybeSendAppend(m.from, false)) {
      // keep sending
    }
    if (m.from === this.leadTransferee) this.maybeSendTimeoutNow(m.from, pr);
  }

  /** Sends TimeoutNow once the transferee caught up (thesis §3.10); see handOver for the rest. */
  private maybeSendTimeoutNow(to: NodeId, pr: Progress): void {
    if (pr.match !== this.log.lastIndex()) return;
    if (this.outsideVoters() && !this.transfereeKnowsCommit) return;
    this.sendTimeoutNow(to);
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.index > pr.lastResponseTick) pr.lastResponseTick = m.index;
    if (
      m.from === this.leadTransferee &&
      !this.transfereeKnowsCommit &&
      this.transfereeToldTick >= 0 &&
      m.index > this.transfereeToldTick // sent after the first full one: it carried our commit
    ) {
      this.transfereeKnowsCommit = true;
      this.maybeSendTimeoutNow(m.from, pr);
    }
    // The follower is alive: unpause a probe whose append or answer may have been lost.
    // BUG probe-never-resumes: skip it, so a lost probe stalls this follower forever.
    if (!this.bugProbeNeverResumes) pr.probeSent = false;
    // A full window with a live follower: free one slot so replication resumes (etcd 3.5).
    if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);

    // Lease-based reads fall back to this heartbeat round too, so check pending reads, not mode.
    if (m.context.length === 0 || this.readOnly.size === 0) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (acks === undefined) return;
    const c = this.tracker.config;
    if (jointVoteResult(c.voters, c.votersOutgoing, acks) !== VoteResult.Won) return;
    const done = this.readOnly.advance(m.context);
    for (let i = 0; i < done.length; i++) this.answerReadIndex(done[i]!.request, done[i]!.index);
  }

  private handleTransferLeader(transferee: NodeId, pr: Progress): void {
    if (pr.isLearner) return; // a learner cannot lead
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === transferee) return; // already in progress
      this.abortLeaderTransfer();
    }
    if (transferee === this.id) return; // already leader
    // The transfer must finish within an election timeout (tickHeartbeat aborts it).
    this.electionElapsedTicks = 0;
    this.leadTransferee = transferee;
    this.transfereeToldTick = -1;
    this.transfereeKnowsCommit = false;
    if (pr.match === this.log.lastIndex()) this.maybeSendTimeoutNow(transferee, pr);
    else this.sendAppend(transferee);
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  // ----- reads (thesis §6.4)

  private handleReadIndex(m: Message): StepResult {
    // BUG stale-read: answer from the local commit index with no confirmation round.
    if (this.bugStaleRead) {
      this.answerReadIndex(m, this.log.committed);
      return null;
    }
    if (this.readOnly.size + this.pendingReadIndexMessages.length >= this.maxPendingReads) {
      return 'READ_INDEX_DROPPED';
    }
    // Our commit index is only known to be current once we committed an entry of our term. A
    // sole voter too: its restored commit index may trail what it committed before a crash (an
    // unsynced commit is lost), and its own entries count only once durable.
    if (!this.committedEntryInCurrentTerm()) {
      this.pendingReadIndexMessages.push(m);
      return null;
    }
    this.acceptReadIndex(m);
    return null;
  }

  private acceptReadIndex(m: Message): void {
    if (this.tracker.isSingleton() && !this.outsideVoters()) {
      this.answerReadIndex(m, this.log.committed); // we are the quorum
      return;
    }
    if (this.readOnlyOption === ReadOnlyOption.LeaseBased && this.leaseValid()) {
      this.answerReadIndex(m, this.log.committed);
      return;
    }
    // Safe (or a lease we cannot vouch for): confirm leadership with a heartbeat round.
    this.readOnly.addRequest(this.log.committed, m);
    this.readOnly.recvAck(this.id, m.context);
    this.bcastHeartbeatWithContext(m.context);
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (!this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (let i = 0; i < pending.length; i++) this.acceptReadIndex(pending[i]!);
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private answerReadIndex(request: Message, index: number): void {
    if (request.from === NONE || request.from === this.id) {
      this.readStates.push({ index, requestCtx: request.context });
      return;
    }
    this.send(
      newMessage({
        type: MessageType.ReadIndexResp,
        to: request.from,
        index,
        context: request.context,
      }),
    );
  }

  /**
   * True while this leader holds a lease (CheckQuorum): a quorum of voters received a heartbeat
   * sent less than an election timeout ago, so none of them will vote for another candidate
   * before our lease ends. Assumes tick rates differ little between nodes.
   */
  leaseValid(): boolean {
    return this.leaseStartTick() !== null;
  }

  /**
   * The tick at which this leader's lease began (a quorum's latest heartbeat answers were to
   * heartbeats sent then), or null without a valid lease (see leaseValid). The lease lasts
   * electionTicks from it; the caller measures that in time as well, since ticks stall with the
   * process (a paused leader's ticks lag the real time its followers count).
   */
  leaseStartTick(): number | null {
    if (this.state !== StateType.Leader || !this.checkQuorum) return null;
    if (this.leadTransferee !== NONE) return null; // a transfer campaign overrides leases
    if (this.leaseForfeitedTerm === this.term) return null;
    // A new leader's commit index may lag what its predecessor acknowledged until it commits an
    // entry of its own term (thesis §6.4): no lease read before that.
    if (!this.committedEntryInCurrentTerm()) return null;
    const self = this.tracker.progress.get(this.id);
    if (self === undefined || self.isLearner) return null;
    self.lastResponseTick = this.ticks;
    const start = this.tracker.quorumResponseTick();
    return this.ticks - start < this.electionTicks ? start : null;
  }

  // -------------------------------------------------------------------------------------------
  // Membership

  private changeBase(): {
    config: TrackerConfig;
    progress: ReadonlyMap<NodeId, Progress>;
    lastIndex: number;
    maxInflightMsgs: number;
  } {
    return {
      config: this.tracker.config,
      progress: this.tracker.progress,
      lastIndex: this.log.lastIndex(),
      maxInflightMsgs: this.tracker.maxInflightMsgs,
    };
  }

  /** Applies a committed ConfChange (the application calls this when it applies the entry). */
  applyConfChange(cc: ConfChange): ConfState {
    this.installConfig(applyChange(this.changeBase(), cc));
    return this.switchedConfig();
  }

  /** True when `cc` would enter a joint configuration that is left automatically. */
  entersAutoJoint(cc: ConfChange): boolean {
    const mode = jointMode(cc, this.tracker.config);
    return mode.enter && mode.autoLeave;
  }

  private installConfig(result: { config: TrackerConfig; progress: Map<NodeId, Progress> }): void {
    this.tracker.setConfig(result.config, result.progress);
    const self = this.tracker.progress.get(this.id);
    this.isLearner = self?.isLearner === true;
  }

  /** After a configuration switch, the leader re-evaluates commit and replication. */
  private switchedConfig(): ConfState {
    const cs = this.tracker.confState();
    if (this.state !== StateType.Leader || cs.voters.length === 0) return cs;
    // A smaller quorum may commit more now; new peers need appends.
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else {
      const ids = this.tracker.ids;
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] !== this.id) this.maybeSendAppend(ids[i]!, false);
      }
    }
    if (this.leadTransferee !== NONE && !this.tracker.isVoter(this.leadTransferee)) {
      this.abortLeaderTransfer();
    }
    if (this.outsideVoters()) this.handOver();
    return cs;
  }

  /** True when this node is not a voter of its configuration (removed, or a learner). */
  private outsideVoters(): boolean {
    const self = this.tracker.progress.get(this.id);
    return self === undefined || self.isLearner;
  }

  /**
   * A leader removed or demoted by an applied change keeps leading — replicating, and telling
   * the new configuration the commit index, as etcd does — and transfers leadership to a voter
   * (thesis §3.10: proposals stop, the transferee catches up, TimeoutNow). TimeoutNow waits until
   * the transferee also acknowledged a heartbeat carrying our commit index: it then knows the
   * change committed, so it campaigns in the new configuration, which does not need us (we may
   * be shut down once removed). It steps down when the successor's higher term reaches it.
   * Stepping down at once (etcd's StepDownOnRemoval, our former deviation) can strand a voter
   * that has not learned the change is committed: it still needs our vote, which our longer log
   * refuses (simulator finding 3). Retried with the next voter after each election timeout
   * without a successor (tickHeartbeat).
   */
  private handOver(): void {
    if (this.leadTransferee !== NONE) return; // one is in progress
    const voters = this.tracker.config.voters;
    assert(voters.length > 0 && !voters.includes(this.id), 'hand over from outside the voters');
    // Round-robin from after the previous target, so a dead voter is not chosen for ever;
    // among the rest, the most caught-up responsive voter wins.
    const start = voters.indexOf(this.handOverTarget) + 1;
    let best: NodeId = NONE;
    let bestRank = -1;
    for (let k = 0; k < voters.length; k++) {
      const id = voters[(start + k) % voters.length]!;
      const pr = this.tracker.progress.get(id)!;
      const rank = pr.match + (pr.recentActive ? this.log.lastIndex() + 1 : 0);
      if (rank > bestRank) {
        best = id;
        bestRank = rank;
      }
    }
    this.handOverTarget = best;
    this.logger?.info(`${this.id} is outside the voters: handing leadership over to ${best}`);
    this.handleTransferLeader(best, this.tracker.progress.get(best)!);
  }

  /**
   * Called on advance: when a leader's applied index reaches an auto-leave joint config entry,
   * it proposes leaving the joint configuration (thesis §4.3, etcd's auto-leave).
   */
  maybeAutoLeaveJoint(oldApplied: number, newApplied: number): void {
    if (this.state !== StateType.Leader || !this.tracker.config.autoLeave) return;
    if (!(oldApplied <= this.pendingConfIndex && newApplied >= this.pendingConfIndex)) return;
    const entry: Entry = {
      term: 0,
      index: 0,
      type: EntryType.ConfChange,
      data: EMPTY_BYTES, // decodes as the leave-joint ConfChange; 0 bytes: never refused
    };
    const accepted = this.appendEntries([entry]);
    assert(accepted, 'leave-joint entry refused');
    this.pendingConfIndex = this.log.lastIndex();
    this.bcastAppend();
  }

  /** Called on advance with the committed entries handed out: they no longer count as pending. */
  reduceUncommittedBytes(ents: readonly Entry[]): void {
    if (this.uncommittedBytes === 0) return;
    const bytes = payloadBytes(ents);
    this.uncommittedBytes = bytes > this.uncommittedBytes ? 0 : this.uncommittedBytes - bytes;
  }

  checkInvariants(): void {
    this.log.checkInvariants();
    for (const pr of this.tracker.progress.values()) pr.checkInvariants();
    if (this.state === StateType.Leader) assert(this.lead === this.id, 'leader must lead itself');
    assert(this.state !== StateType.Candidate || this.vote === this.id, 'candidate votes itself');
  }
}

/** Relations between limits, asserted at construction (TigerBeetle style). */
function validateConfig(c: RaftConfig): void {
  const positive = (n: number, what: string): void =>
    assert(Number.isSafeInteger(n) && n > 0, `${what} must be a positive integer, got ${n}`);
  assert(c.id !== NONE && Number.isSafeInteger(c.id) && c.id > 0, 'id must be a positive integer');
  positive(c.heartbeatTicks, 'heartbeatTicks');
  positive(c.electionTicks, 'electionTicks');
  assert(c.electionTicks > c.heartbeatTicks, 'electionTicks must be > heartbeatTicks');
  positive(c.maxMsgBytes, 'maxMsgBytes');
  positive(c.maxInflightMsgs, 'maxInflightMsgs');
  positive(c.maxUncommittedBytes, 'maxUncommittedBytes');
  positive(c.maxPendingReads, 'maxPendingReads');
  positive(c.maxCommittedBytesPerReady, 'maxCommittedBytesPerReady');
  // A leader must be able to hold at least one full append message of uncommitted data.
  assert(c.maxUncommittedBytes >= c.maxMsgBytes, 'maxUncommittedBytes must be >= maxMsgBytes');
  assert(Number.isSafeInteger(c.applied) && c.applied >= 0, 'applied must be >= 0');
  // Lease reads rely on CheckQuorum: without it a deposed leader would not notice.
  assert(
    c.readOnlyOption !== ReadOnlyOption.LeaseBased || c.checkQuorum,
    'LeaseBased reads require checkQuorum',
  );
}
