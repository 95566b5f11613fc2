/**
 * Test harness: a cluster of RawNodes over MemoryStorage on an in-process FIFO network, driven
 * by hand. It follows the Ready contract exactly (persist, send, apply, advance) so tests
 * exercise the same sequence the member loop will.
 */
import { decodeConfChange } from '../../src/raft/codec.js';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import {
  type BugName,
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  type NodeId,
  type RaftConfig,
  ReadOnlyOption,
  type ReadState,
  StateType,
} from '../../src/raft/types.js';
import { Prng } from '../../src/util/prng.js';

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

export function makeConfig(
  id: NodeId,
  storage: MemoryStorage,
  overrides: Partial<RaftConfig> = {},
): RaftConfig {
  return {
    id,
    electionTicks: 10,
    heartbeatTicks: 1,
    storage,
    applied: 0,
    maxMsgBytes: 1 << 20,
    maxInflightMsgs: 256,
    maxUncommittedBytes: 1 << 30,
    maxPendingReads: 1024,
    maxCommittedBytesPerReady: 1 << 30,
    preVote: false,
    checkQuorum: false,
    readOnlyOption: ReadOnlyOption.Safe,
    disableProposalForwarding: false,
    random: new Prng(id * 7919),
    ...overrides,
  };
}

export interface Member {
  id: NodeId;
  node: RawNode;
  storage: MemoryStorage;
  /** Normal entries with data, applied in order. */
  appliedData: string[];
  appliedIndex: number;
  readStates: ReadState[];
  confState: ConfState | null;
  /** Config used to (re)create the node. */
  config: Partial<RaftConfig>;
}

export interface ClusterOptions extends Partial<RaftConfig> {
  /** Voters written by bootstrap; defaults to all ids. */
  voters?: NodeId[];
  bugsFor?: (id: NodeId) => ReadonlySet<BugName> | undefined;
}

export class Cluster {
  readonly members = new Map<NodeId, Member>();
  /** Messages in flight, delivered in FIFO order. */
  queue: Message[] = [];
  /** Return false to drop a message. */
  filter: (m: Message) => boolean = () => true;
  /** Every message ever sent, for assertions. */
  sent: Message[] = [];
  private readonly options: ClusterOptions;

  constructor(ids: NodeId[], options: ClusterOptions = {}) {
    this.options = options;
    const voters = options.voters ?? ids;
    for (const id of ids) {
      const storage = new MemoryStorage();
      if (voters.includes(id)) RawNode.bootstrap(storage, voters);
      this.addMember(id, storage);
    }
  }

  /** Creates (or re-creates, as after a crash) the member `id` over `storage`. */
  addMember(id: NodeId, storage: MemoryStorage, applied = 0): Member {
    const { voters: _v, bugsFor, ...rest } = this.options;
    const config: Partial<RaftConfig> = { ...rest, bugs: bugsFor?.(id), applied };
    const node = new RawNode(makeConfig(id, storage, config));
    const first = storage.snapshot().metadata.index;
    const m: Member = {
      id,
      node,
      storage,
      appliedData: snapshotData(storage.snapshot().data),
      appliedIndex: Math.max(applied, first),
      readStates: [],
      confState: null,
      config,
    };
    this.members.set(id, m);
    return m;
  }

  get(id: NodeId): Member {
    const m = this.members.get(id);
    if (m === undefined) throw new Error(`no member ${id}`);
    return m;
  }

  node(id: NodeId): RawNode {
    return this.get(id).node;
  }

  /** Simulates a crash and restart: unsent messages and volatile state are lost. */
  restart(id: NodeId): Member {
    const old = this.get(id);
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
    // The application state is rebuilt from the log: keep it simple by restarting at the
    // snapshot index and re-applying.
    const fresh = this.addMember(id, old.storage, 0);
    return fresh;
  }

  /** Runs the Ready loop of `id` once per pending Ready. */
  processReady(id: NodeId): void {
    const m = this.get(id);
    while (m.node.hasReady()) {
      const rd = m.node.ready();
      // 0. send what may leave before the write (a leader's appends)
      for (const msg of rd.messagesNow) {
        this.sent.push(msg);
        this.queue.push(msg);
      }
      // 1. persist
      if (rd.snapshot !== null) m.storage.applySnapshot(rd.snapshot);
      m.storage.append(rd.entries);
      if (rd.hardState !== null) m.storage.setHardState(rd.hardState);
      // 2. send
      for (const msg of rd.messages) {
        this.sent.push(msg);
        this.queue.push(msg);
      }
      // 3. apply
      if (rd.snapshot !== null) {
        m.appliedIndex = rd.snapshot.metadata.index;
        m.confState = rd.snapshot.metadata.confState;
        m.appliedData = snapshotData(rd.snapshot.data);
      }
      for (const e of rd.committedEntries) this.apply(m, e);
      for (const rs of rd.readStates) m.readStates.push(rs);
      m.node.advance(rd);
    }
  }

  private apply(m: Member, e: Entry): void {
    if (e.index !== m.appliedIndex + 1) {
      throw new Error(`${m.id} applies ${e.index} after ${m.appliedIndex}`);
    }
    m.appliedIndex = e.index;
    if (e.type === EntryType.ConfChange) {
      m.confState = m.node.applyConfChange(decodeConfChange(e.data));
    } else if (e.data.length > 0) {
      m.appliedData.push(dec(e.data));
    }
  }

  /** Processes readies and delivers messages until nothing moves (bounded). */
  drain(maxSteps = 100_000): void {
    for (let step = 0; step < maxSteps; step++) {
      for (const id of this.members.keys()) this.processReady(id);
      const msg = this.queue.shift();
      if (msg === undefined) return;
      if (!this.filter(msg)) continue;
      const target = this.members.get(msg.to);
      if (target === undefined) continue;
      target.node.step(msg);
    }
    throw new Error('cluster did not quiesce');
  }

  /** Delivers only pending readies (no message delivery): collects outbound messages. */
  flush(): void {
    for (const id of this.members.keys()) this.processReady(id);
  }

  /** Snapshots `id`'s state machine at its applied index and compacts its log there. */
  compact(id: NodeId): boolean {
    const m = this.get(id);
    if (m.appliedIndex <= m.storage.snapshot().metadata.index) return false;
    const data = enc(JSON.stringify(m.appliedData));
    m.storage.createSnapshot(m.appliedIndex, m.node.status().config, data);
    m.storage.compact(m.appliedIndex);
    return true;
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) this.node(id).tick();
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) for (const m of this.members.values()) m.node.tick();
  }

  elect(id: NodeId): void {
    this.node(id).campaign();
    this.drain();
  }

  isolate(id: NodeId): void {
    this.filter = (m) => m.from !== id && m.to !== id;
  }

  heal(): void {
    this.filter = () => true;
  }

  leader(): NodeId {
    for (const m of this.members.values()) {
      if (m.node.raft.state === StateType.Leader) return m.id;
    }
    return 0;
  }

  /** Takes every queued message (without delivering it). */
  takeQueue(): Message[] {
    const q = this.queue;
    this.queue = [];
    return q;
  }
}

/** A lone node for message-level tests (like etcd's raft_paper_test newTestRaft). */
export interface Solo {
  node: RawNode;
  storage: MemoryStorage;
  applied: Entry[];
  readStates: ReadState[];
}

export function newSolo(
  id: NodeId,
  voters: NodeId[],
  overrides: Partial<RaftConfig> = {},
  storage: MemoryStorage = new MemoryStorage(),
): Solo {
  if (storage.lastIndex() === 0 && storage.snapshot().metadata.index === 0) {
    RawNode.bootstrap(storage, voters);
  }
  return {
    node: new RawNode(makeConfig(id, storage, overrides)),
    storage,
    applied: [],
    readStates: [],
  };
}

/** Runs the Ready loop of a Solo; returns the messages it would send. */
export function readMessages(s: Solo): Message[] {
  const out: Message[] = [];
  while (s.node.hasReady()) {
    const rd = s.node.ready();
    out.push(...rd.messagesNow);
    if (rd.snapshot !== null) s.storage.applySnapshot(rd.snapshot);
    s.storage.append(rd.entries);
    if (rd.hardState !== null) s.storage.setHardState(rd.hardState);
    out.push(...rd.messages);
    for (const e of rd.committedEntries) {
      s.applied.push(e);
      if (e.type === EntryType.ConfChange) s.node.applyConfChange(decodeConfChange(e.data));
    }
    s.readStates.push(...rd.readStates);
    s.node.advance(rd);
  }
  return out;
}

/** A message with every field defaulted. */
export function msg(init: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    to: 0,
    from: 0,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    snapshot: null,
    reject: false,
    rejectHint: 0,
    context: new Uint8Array(0),
    ...init,
  };
}

export function entry(index: number, term: number, data = ''): Entry {
  return { index, term, type: EntryType.Normal, data: enc(data) };
}

/** A bootstrapped storage (index 1 term 1) followed by entries of `terms` from index 2. */
export function storageWithTerms(voters: NodeId[], terms: number[], hardTerm = 0): MemoryStorage {
  const s = new MemoryStorage();
  RawNode.bootstrap(s, voters);
  s.append(terms.map((t, i) => entry(i + 2, t)));
  if (hardTerm > 0) s.setHardState({ term: hardTerm, vote: 0, commit: 1 });
  return s;
}

export function logTerms(node: RawNode): number[] {
  const log = node.raft.log;
  const out: number[] = [];
  for (let i = log.firstIndex() - 1; i <= log.lastIndex(); i++) out.push(log.term(i)!);
  return out;
}

/** The harness's state machine image: the JSON list of applied data (empty at bootstrap). */
function snapshotData(data: Uint8Array): string[] {
  return data.length === 0 ? [] : (JSON.parse(dec(data)) as string[]);
}
