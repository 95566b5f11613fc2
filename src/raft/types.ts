/**
 * The vocabulary of the Raft core: entries, messages, hard state, snapshots, membership, and the
 * `Ready` contract between the pure state machine and the code that does its I/O.
 *
 * Modelled on etcd-io/raft's raftpb, in TypeScript terms. Everything here is plain data so it can
 * be encoded by the transport and stored by the WAL without adapters.
 *
 * Numbers: node ids, terms and indexes are non-negative safe integers (< 2^53). `0` means "none"
 * for node ids, and "nothing" for indexes and terms.
 */

export type NodeId = number;
export const NONE: NodeId = 0;

// ---------------------------------------------------------------------------------------------
// Log entries

export const EntryType = {
  /** An application command (or an empty entry: the leader's no-op on election). */
  Normal: 0,
  /** A membership change; `data` is an encoded `ConfChange` (see codec.ts). */
  ConfChange: 1,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Never mutated once the entry exists: storage hands out shared references. */
  readonly data: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Durable state

/** What a member must persist before it answers: Raft paper figure 2 "persistent state". */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

/** The membership configuration, possibly joint (votersOutgoing non-empty). */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** The outgoing voters of a joint configuration; empty when not joint. */
  readonly votersOutgoing: readonly NodeId[];
  /** Voters of the outgoing config that become learners when the joint config is left. */
  readonly learnersNext: readonly NodeId[];
  /** When true the leader proposes leaving the joint configuration by itself. */
  readonly autoLeave: boolean;
}

/** `id` is in `cs` in any role: a voter or learner, on either side of a joint configuration. */
export function inConfState(cs: ConfState, id: NodeId): boolean {
  return (
    cs.voters.includes(id) ||
    cs.learners.includes(id) ||
    cs.votersOutgoing.includes(id) ||
    cs.learnersNext.includes(id)
  );
}

/** `id` is a voter of `cs`, on either side of a joint configuration. */
export function isVoterIn(cs: Pick<ConfState, 'voters' | 'votersOutgoing'>, id: NodeId): boolean {
  return cs.voters.includes(id) || cs.votersOutgoing.includes(id);
}

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** The application's state machine image at `metadata.index`; opaque to raft. */
  readonly data: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Membership changes (etcd's ConfChangeV2)

export const ConfChangeType = {
  /** Add a voter, or promote a learner to voter. */
  AddNode: 0,
  RemoveNode: 1,
  /** Add a learner, or demote a voter to learner. */
  AddLearnerNode: 2,
} as const;
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType];

export const ConfChangeTransition = {
  /**
   * Use joint consensus when the change is not a simple one (more than one voter changes, or a
   * voter is demoted), and leave the joint configuration automatically.
   */
  Auto: 0,
  /** Always use joint consensus, leave automatically. */
  JointImplicit: 1,
  /** Always use joint consensus; the application leaves explicitly with an empty ConfChange. */
  JointExplicit: 2,
} as const;
export type ConfChangeTransition = (typeof ConfChangeTransition)[keyof typeof ConfChangeTransition];

export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
}

/** An empty `changes` list means "leave the joint configuration". */
export interface ConfChange {
  readonly transition: ConfChangeTransition;
  readonly changes: readonly ConfChangeSingle[];
  /** Opaque to raft; the application uses it (e.g. the member's addresses). */
  readonly context: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Messages

export const MessageType = {
  // Local messages: never sent over the network, stepped into the node by itself. Exception:
  // Prop (like ReadIndex and TransferLeader) is forwarded by a follower to its leader, with
  // term 0; RawNode.step accepts it. See LOCAL_MESSAGE_TYPES for what RawNode.step refuses.
  Hup: 0,
  Beat: 1,
  Prop: 2,
  CheckQuorum: 3,
  // Network messages.
  App: 4,
  AppResp: 5,
  Vote: 6,
  VoteResp: 7,
  PreVote: 8,
  PreVoteResp: 9,
  Snap: 10,
  Heartbeat: 11,
  HeartbeatResp: 12,
  Unreachable: 13,
  SnapStatus: 14,
  TransferLeader: 15,
  TimeoutNow: 16,
  ReadIndex: 17,
  ReadIndexResp: 18,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/**
 * Message types RawNode.step refuses (RaftError 'STEP_LOCAL_MSG'): they are generated by the node
 * itself or by RawNode's methods (reportUnreachable, reportSnapshot), never received.
 */
export const LOCAL_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  MessageType.Hup,
  MessageType.Beat,
  MessageType.CheckQuorum,
  MessageType.Unreachable,
  MessageType.SnapStatus,
]);

export const MESSAGE_TYPE_NAMES: Readonly<Record<MessageType, string>> = Object.freeze(
  Object.fromEntries(Object.entries(MessageType).map(([name, value]) => [value, name])) as Record<
    MessageType,
    string
  >,
);

export interface Message {
  readonly type: MessageType;
  readonly to: NodeId;
  readonly from: NodeId;
  readonly term: number;
  /** App: term of the entry at `index`. Vote/PreVote: candidate's last log term. */
  readonly logTerm: number;
  /** App: index preceding `entries`. AppResp: the follower's match or rejected index. */
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly snapshot: Snapshot | null;
  readonly reject: boolean;
  /** AppResp rejection: the follower's hint for fast backtracking (see `logTerm` too). */
  readonly rejectHint: number;
  /** ReadIndex request context; Heartbeat carries the read-only context it confirms. */
  readonly context: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Roles, status and reads

export const StateType = {
  Follower: 0,
  Candidate: 1,
  Leader: 2,
  PreCandidate: 3,
} as const;
export type StateType = (typeof StateType)[keyof typeof StateType];

export const STATE_TYPE_NAMES: Readonly<Record<StateType, string>> = Object.freeze({
  0: 'follower',
  1: 'candidate',
  2: 'leader',
  3: 'pre-candidate',
});

/** Volatile state that the caller wants to observe (leader changes, role changes). */
export interface SoftState {
  readonly lead: NodeId;
  readonly raftState: StateType;
}

/**
 * A ReadIndex result: once the state machine has applied `index`, a read issued with
 * `requestCtx` may be served and is linearizable.
 */
export interface ReadState {
  readonly index: number;
  readonly requestCtx: Uint8Array;
}

export const ReadOnlyOption = {
  /** Confirm leadership with a heartbeat round before answering (ReadIndex). */
  Safe: 0,
  /** Trust the leader lease that CheckQuorum provides; needs bounded clock drift. */
  LeaseBased: 1,
} as const;
export type ReadOnlyOption = (typeof ReadOnlyOption)[keyof typeof ReadOnlyOption];

// ---------------------------------------------------------------------------------------------
// The Ready contract

/**
 * Everything the state machine asks its caller to do, in this order:
 *
 *   0. send `messagesNow` (a leader's appends: they may travel while its own write runs);
 *   1. persist `hardState`, `entries` and `snapshot` (one write, one fdatasync: group commit);
 *      when `mustSync` is false the write may skip the fdatasync;
 *   2. only then send `messages` (a vote or an append acknowledgement must never leave before
 *      the state it reflects is durable);
 *   3. apply `snapshot` (if any) and then `committedEntries`, in order, to the state machine;
 *   4. call `advance()`: the entries are durable (a leader now counts its own toward commits).
 *
 * Between `ready()` and `advance()` the caller must not call `ready()` again.
 */
export interface Ready {
  /** Present when the leader or role changed since the last Ready. Not persisted. */
  readonly softState: SoftState | null;
  /** Present when term, vote or commit changed. Persist before sending `messages`. */
  readonly hardState: HardState | null;
  /** Linearizable read results; serve each once `applied >= index`. */
  readonly readStates: readonly ReadState[];
  /** Entries to append to stable storage (may overwrite a conflicting suffix). */
  readonly entries: readonly Entry[];
  /** A snapshot to persist and then install in the state machine. */
  readonly snapshot: Snapshot | null;
  /**
   * Entries known committed: apply them in order. Each is in stable storage (a leader counts
   * its own entries only once `advance` reported them durable), so it is durable after step 1.
   */
  readonly committedEntries: readonly Entry[];
  /**
   * Outbound messages that may leave at once, before step 1: a leader's appends, heartbeats and
   * snapshots when its term and vote are already durable (Raft thesis §10.2.1: the leader writes
   * its log in parallel with replicating it; its own entries count toward a commit only once
   * they are durable, reported by `advance`, so a commit always stands on a durable majority).
   */
  readonly messagesNow: readonly Message[];
  /** Outbound messages: send only after step 1 is durable (votes, acknowledgements, ...). */
  readonly messages: readonly Message[];
  /** True when a vote, a term or new entries must reach disk with an fdatasync. */
  readonly mustSync: boolean;
}

// ---------------------------------------------------------------------------------------------
// Storage the core reads from

/**
 * The log as stable storage holds it, read by the core (hashicorp's LogStore + StableStore for
 * reads). The caller writes to it after persisting each Ready (MemoryStorage in storage.ts is the
 * reference implementation; the WAL-backed member keeps one as its cache).
 *
 * Contract: after `compact(i)` the entry at i survives as the dummy "previous" entry that
 * `term(i)` still answers; `firstIndex()` is i + 1.
 */
export interface LogStorage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at most `maxBytes` of data (at least one entry if any). */
  entries(lo: number, hi: number, maxBytes: number): readonly Entry[];
  /** Term of entry i, for firstIndex()-1 <= i <= lastIndex(). Throws a RaftError otherwise. */
  term(i: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

// ---------------------------------------------------------------------------------------------
// Configuration and injected bugs

/**
 * Known bugs that the simulator must catch. Switched on only by the simulator's `--bug` flag;
 * in production the set is empty.
 */
export const BUG_NAMES = [
  /** Commit an entry of a previous term by counting its replicas (Raft paper §5.4.2). */
  'commit-old-term',
  /** Do not persist the vote: a restarted node may vote twice in one term. */
  'forget-vote',
  /** Answer ReadIndex from local commit index without the heartbeat round. */
  'stale-read',
  /** Accept an append without checking the previous index/term. */
  'skip-log-check',
  /**
   * Every message leaves before the Ready's write (Ready.messagesNow), acknowledgements and
   * votes too: a commit may stand on entries a crash then loses.
   */
  'ack-before-durable',
  /** Liveness: a heartbeat response never unpauses a probing follower, so a lost probe stalls it. */
  'probe-never-resumes',
] as const;
export type BugName = (typeof BUG_NAMES)[number];

export interface RaftLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export interface RaftConfig {
  readonly id: NodeId;
  /** Ticks without hearing from a leader before campaigning; randomized in [e, 2e). */
  readonly electionTicks: number;
  /** Ticks between leader heartbeats; must be < electionTicks. */
  readonly heartbeatTicks: number;
  readonly storage: LogStorage;
  /** The last applied index on restart; entries up to it are not handed out again. */
  readonly applied: number;
  /** Bytes of entry data per append message (at least one entry is always sent). */
  readonly maxMsgBytes: number;
  /** Append messages in flight per follower in the replicate state. */
  readonly maxInflightMsgs: number;
  /** Bytes of proposed but uncommitted entry data a leader accepts before dropping proposals. */
  readonly maxUncommittedBytes: number;
  /** ReadIndex requests a leader keeps pending before rejecting new ones. */
  readonly maxPendingReads: number;
  /** Bytes of committed entry data handed out per Ready. */
  readonly maxCommittedBytesPerReady: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readOnlyOption: ReadOnlyOption;
  /** Reject proposals on followers instead of forwarding them to the leader. */
  readonly disableProposalForwarding: boolean;
  /** Seeded generator for election timeouts; the only randomness the core uses. */
  readonly random: import('../util/prng.js').Random;
  readonly logger?: RaftLogger;
  /** Simulator only: known bugs switched on. */
  readonly bugs?: ReadonlySet<BugName>;
}

// ---------------------------------------------------------------------------------------------
// Status (observability; RawNode.status)

export type ProgressStateName = 'probe' | 'replicate' | 'snapshot';

/** The leader's view of one peer's replication. */
export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressStateName;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
  /** Append messages in flight (replicate state). */
  readonly inflightMsgs: number;
  readonly pendingSnapshot: number;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly lead: NodeId;
  readonly raftState: StateType;
  readonly leadTransferee: NodeId;
  readonly config: ConfState;
  /** Per peer (the leader included) when this node is the leader; empty otherwise. */
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
}
