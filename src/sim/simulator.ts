/**
 * One simulated run (a seed): a cluster of node hosts on a virtual clock, network and disks,
 * driven by a workload and a nemesis through a safety phase (faults on, invariants checked after
 * every event), then a liveness phase (network healed, crashed nodes restarted) that must elect a
 * leader and commit a new proposal on every member within a bounded virtual time.
 */
import { RawNode } from '../raft/rawnode.js';
import { MemoryStorage } from '../raft/storage.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  isVoterIn,
  MESSAGE_TYPE_NAMES,
  type Message,
  MessageType,
  type NodeId,
  StateType,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import { Prng } from '../util/prng.js';
import { Checker, failureOf, InvariantViolation, type RunFailure } from './checker.js';
import { type DropReason, SimNetwork } from './network.js';
import { NodeHost } from './node.js';
import { deriveParams, formatParams, MAX_STEPS_DEFAULT, type SimParams } from './params.js';
import { EventQueue } from './queue.js';
import { formatConf, membersOf, type Phase, type RunOptions, type RunResult } from './run.js';
import { Trace } from './trace.js';
import { Workload, type WorkloadWorld } from './workload.js';

/** Trace kinds for the network. */
const TRACE_DELIVER = 20;
const TRACE_DROP = 21;
const DROP_REASON_CODE: Readonly<Record<DropReason, number>> = { lost: 1, partitioned: 2, down: 3 };

/** Marks a liveness failure caused by the open raft hole of FINDINGS.md #3 (see the README). */
export const FINDING_3_OPEN_HOLE = 'the open raft hole of FINDINGS.md #3';

export class Simulation implements WorkloadWorld {
  readonly params: SimParams;
  readonly queue = new EventQueue();
  readonly rng: Prng;
  readonly network: SimNetwork<Message>;
  readonly checker = new Checker();
  readonly trace: Trace;
  readonly hosts = new Map<NodeId, NodeHost>();
  readonly workload: Workload;
  phase: Phase = 'safety';
  steps = 0;
  /** The newest configuration applied by any member, and its index. */
  conf: { index: number; state: ConfState };
  livenessDoneMs = -1;
  /**
   * Removed members still running → the index of the change that removed them (each removal
   * has its own condition: a member removed by a later change is not stopped early).
   */
  private readonly removals = new Map<NodeId, number>();
  /** Removed members whose stop is scheduled (each in an event of its own). */
  private readonly stopsScheduled = new Set<NodeId>();
  /** A re-check of the removals is scheduled (see `pollRemovals`). */
  private removalsPolled = false;
  /** Every member of `conf` (voters, learners, outgoing, next learners). */
  private members: ReadonlySet<NodeId>;

  constructor(options: RunOptions) {
    this.params = deriveParams(options.seed, {
      ...(options.voters === undefined ? {} : { voters: options.voters }),
      ...(options.bug === undefined ? {} : { bugs: [options.bug] }),
      ...(options.leaseReads === undefined ? {} : { leaseReads: options.leaseReads }),
      ...(options.stepsDuringReady === undefined
        ? {}
        : { stepsDuringReady: options.stepsDuringReady }),
    });
    this.rng = new Prng(options.seed ^ 0x5eed5eed);
    this.trace = Trace.fromOption(options.trace);
    this.network = new SimNetwork<Message>(this.queue, this.rng.fork(), this.params.network, {
      deliver: (from, to, msg) => this.deliver(from, to, msg),
      dropped: (from, to, msg, reason) => this.dropped(from, to, msg, reason),
    });
    const voters: NodeId[] = [];
    for (let id = 1; id <= this.params.voters; id++) voters.push(id);
    this.conf = {
      index: 0,
      state: { voters, learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false },
    };
    this.members = new Set(voters);
    for (const id of voters) {
      const storage = new MemoryStorage();
      RawNode.bootstrap(storage, voters);
      this.addHost(id, storage);
    }
    // The bootstrap snapshot (index 1 in this core) is committed on every founding member.
    const boot = this.hosts.get(1)!.storage.snapshot().metadata;
    for (let i = 1; i <= boot.index; i++) this.checker.seedCommitted(i, boot.term);
    this.workload = new Workload(this);
    this.checker.onCommitAdvanced = (k) => this.checkElectability(k);
  }

  /** No up node lacking committed entry `k` could win an election (see Checker.checkElectable). */
  private checkElectability(k: number): void {
    const want = this.checker.committedTermAt(k)!;
    const voterLog = (id: NodeId): { index: number; term: number } | null => {
      const host = this.hosts.get(id);
      if (host === undefined || host.state === 'stopped') return null;
      const st = host.storage;
      const durable = { index: st.lastIndex(), term: st.term(st.lastIndex()) };
      const view = host.raftView();
      if (view === null) return durable;
      const memory = { index: view.lastIndex, term: view.lastTerm };
      const memoryLess =
        memory.term < durable.term ||
        (memory.term === durable.term && memory.index < durable.index);
      return memoryLess ? memory : durable;
    };
    const conf = this.conf.state;
    for (const host of this.hosts.values()) {
      if (host.state === 'stopped') continue;
      // A down node would campaign with its durable log, under (about) the latest configuration.
      const view = host.raftView() ?? {
        lastIndex: host.storage.lastIndex(),
        lastTerm: host.storage.term(host.storage.lastIndex()),
        termAt: (i: number) =>
          i >= host.storage.firstIndex() - 1 && i <= host.storage.lastIndex()
            ? host.storage.term(i)
            : undefined,
        firstIndex: host.storage.firstIndex(),
        voters: conf.voters,
        votersOutgoing: conf.votersOutgoing,
        canCampaign: host.canCampaignAfterRestart(),
      };
      // Raft does not campaign with a committed conf change unapplied (its config is stale).
      if (!view.canCampaign) continue;
      if (!isVoterIn(view, host.id)) continue;
      // Compacted below its first index: covered by its snapshot, which is committed state.
      const has = k < view.firstIndex - 1 || (k <= view.lastIndex && view.termAt(k) === want);
      this.checker.checkElectable(
        host.id,
        { index: view.lastIndex, term: view.lastTerm },
        has,
        view.voters,
        view.votersOutgoing,
        voterLog,
      );
    }
  }

  addHost(id: NodeId, storage?: MemoryStorage): NodeHost {
    assert(!this.hosts.has(id), `node id ${id} reused`);
    const host = new NodeHost(id, this, this.rng.fork(), storage);
    this.hosts.set(id, host);
    return host;
  }

  /** Runs the seed to its end; invariant violations and crashes propagate as exceptions. */
  run(maxSteps: number): void {
    for (const host of this.hosts.values()) host.start();
    this.workload.start();
    this.queue.at(this.params.safetyMs, () => this.startLiveness());
    while (this.phase !== 'done') {
      if (!this.queue.runNext()) throw new Error('the event queue ran dry');
      this.steps++;
      if (this.phase === 'safety' && this.steps >= maxSteps) this.startLiveness();
    }
  }

  private startLiveness(): void {
    if (this.phase !== 'safety') return;
    this.phase = 'liveness';
    this.network.healAll();
    this.network.params = { ...this.network.params, lossRate: 0, duplicateRate: 0 };
    for (const host of this.hosts.values()) if (host.state === 'down') host.start();
    if (this.trace.enabled) this.trace.line(this.queue.nowMs, 'liveness phase: healed, restarted');
    this.workload.startLiveness();
  }

  finishLiveness(): void {
    this.phase = 'done';
    this.livenessDoneMs = this.queue.nowMs;
  }

  failLiveness(message: string): never {
    const roles = [...this.hosts.values()]
      .map((h) => {
        const r = h.role();
        const name =
          r === null ? h.state : ['follower', 'candidate', 'leader', 'pre-candidate'][r.state];
        return `n${h.id}:${name}${r === null ? '' : `@${r.term}/c${r.commit}`}/a${h.sm.appliedIndex}`;
      })
      .join(' ');
    const hole = this.openHoleOfFinding3();
    throw new InvariantViolation(
      'liveness',
      `${message} (config ${formatConf(this.conf.state)}; ${roles})${hole === null ? '' : `; ${hole}`}`,
    );
  }

  /**
   * Names the still open raft hole of FINDINGS.md #3 when it is what stalls the cluster: a
   * removed member, no longer leading, applied the change that removed it, while a voter of the
   * newest configuration has not and still counts the removed member as a voter (it needs that
   * vote, which a log lacking the committed change never gets).
   */
  private openHoleOfFinding3(): string | null {
    for (const [id, index] of this.removals) {
      const removed = this.hosts.get(id)!;
      const role = removed.role();
      if (role === null || role.state === StateType.Leader || removed.sm.appliedIndex < index) {
        continue;
      }
      for (const voterId of this.conf.state.voters) {
        const view = this.hosts.get(voterId)?.raftView();
        if (view === null || view === undefined) continue;
        if (isVoterIn(view, id)) {
          return (
            `${FINDING_3_OPEN_HOLE}: removed n${id} applied its removal at ${index}, ` +
            `voter n${voterId} still counts it`
          );
        }
      }
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // Network glue

  private deliver(from: NodeId, to: NodeId, msg: Message): boolean {
    const host = this.hosts.get(to);
    if (host === undefined || !host.up) return false;
    this.trace.mix(TRACE_DELIVER, from, to, msg.type, msg.term, msg.index);
    if (this.trace.enabled)
      this.trace.line(this.queue.nowMs, `n${from}→n${to} ${formatMessage(msg)}`);
    host.deliver(msg);
    if (msg.type === MessageType.Snap) this.reportLater(from, (h) => h.reportSnapshot(to, true));
    return true;
  }

  private dropped(from: NodeId, to: NodeId, msg: Message, reason: DropReason): void {
    this.trace.mix(TRACE_DROP, from, to, msg.type, DROP_REASON_CODE[reason]);
    if (this.trace.enabled) {
      this.trace.line(
        this.queue.nowMs,
        `n${from}→n${to} ${formatMessage(msg)} dropped (${reason})`,
      );
    }
    if (msg.type === MessageType.Snap) this.reportLater(from, (h) => h.reportSnapshot(to, false));
    // A transport notices a dead connection; a lost packet it does not.
    if (reason !== 'lost') this.reportLater(from, (h) => h.reportUnreachable(to));
  }

  /** The sender's transport learns a message's fate one network latency later. */
  private reportLater(node: NodeId, fn: (host: NodeHost) => void): void {
    this.queue.after(this.network.latencyMs(), () => {
      const host = this.hosts.get(node);
      if (host?.up) fn(host);
    });
  }

  // -------------------------------------------------------------------------------------------
  // HostEnv: what the hosts report

  onProcessGone(node: NodeId): void {
    // Every peer's link to it breaks and is refused one latency later, as a real transport's.
    for (const id of this.hosts.keys()) {
      if (id !== node) this.reportLater(id, (h) => h.reportPeerDown(node));
    }
  }

  onApplied(node: NodeId, entry: Entry): void {
    this.workload.onApplied(node, entry);
    if (this.removals.size > 0) this.maybeStopRemoved();
  }

  onConfApplied(node: NodeId, index: number, cc: ConfChange, confState: ConfState | null): void {
    this.checker.onConfApplied(node, index, confState === null ? null : formatConf(confState));
    if (this.trace.enabled) {
      const what = confState === null ? 'rejected' : formatConf(confState);
      this.trace.line(
        this.queue.nowMs,
        `n${node} applied conf change ${index}: ${formatChange(cc)} → ${what}`,
      );
    }
    if (confState !== null && index > this.conf.index) {
      const before = this.members;
      this.conf = { index, state: confState };
      this.members = new Set(membersOf(confState));
      for (const id of this.members) this.removals.delete(id);
      for (const id of before) {
        if (!this.members.has(id) && this.hosts.get(id)?.state !== 'stopped') {
          this.removals.set(id, index);
        }
      }
      this.pollRemovals();
      this.workload.onConfChanged();
    }
    if (this.removals.size > 0) this.maybeStopRemoved();
  }

  /**
   * A removed member shuts down (etcd's does; its peers answer it "member removed"), but only
   * once no member can need it again: every member of the newest configuration has applied the
   * change that removed it and would apply it again after a crash, without any peer. Until then
   * a member still in the old or joint configuration may need its vote, or — with one voter —
   * only the removed leader knows that the change committed, and no design survives its stop
   * (FINDINGS.md #3). Members of later configurations that were removed themselves need it
   * only while a member of the newest one has not applied their own, later removal, which this
   * rule already waits for. Members added later never count it: they join after the change.
   * The stop is an event of its own: the host applying the change may be the one removed.
   */
  private maybeStopRemoved(): void {
    for (const [id, index] of this.removals) {
      if (this.stopsScheduled.has(id) || !this.removalSettled(id, index)) continue;
      this.stopsScheduled.add(id);
      this.queue.after(0, () => {
        this.stopsScheduled.delete(id);
        if (this.removals.get(id) !== index || !this.removalSettled(id, index)) return;
        this.removals.delete(id);
        const host = this.hosts.get(id)!;
        if (host.state === 'stopped') return;
        host.stop();
        if (this.trace.enabled) this.trace.line(this.queue.nowMs, `n${id} removed: stopped`);
      });
    }
  }

  /**
   * Re-checks the removals every heartbeat while some are pending: a member's commit index
   * becomes durable by a disk write, which applies nothing and so calls no `onApplied`.
   */
  private pollRemovals(): void {
    if (this.removalsPolled || this.removals.size === 0) return;
    this.removalsPolled = true;
    this.queue.after(this.params.heartbeatTicks * this.params.tickMs, () => {
      this.removalsPolled = false;
      this.maybeStopRemoved();
      this.pollRemovals();
    });
  }

  /** Every member of the newest configuration has applied removal `index` of `id`, durably. */
  private removalSettled(id: NodeId, index: number): boolean {
    assert(!this.members.has(id), `n${id} is a member, not removed`);
    for (const member of this.members) {
      const host = this.hosts.get(member);
      if (host === undefined || host.state === 'stopped') continue;
      // A down member applies again, on restart, what it durably knows committed.
      if (host.up && host.sm.appliedIndex < index) return false;
      if (host.durablyKnownIndex() < index) return false;
    }
    return true;
  }

  onReadServed(node: NodeId, ctx: Uint8Array, index: number): void {
    this.workload.onReadServed(node, ctx, index);
  }

  onVoteGranted(node: NodeId): void {
    this.workload.onVoteGranted(node);
  }

  onLeaderElected(node: NodeId, term: number): void {
    this.workload.onLeaderElected(node, term);
  }

  onLeaderFirstCommit(node: NodeId, term: number): void {
    this.workload.onLeaderFirstCommit(node, term);
  }

  /** The up node that believes it leads in the highest term, if any. */
  leader(): NodeHost | null {
    let best: NodeHost | null = null;
    let bestTerm = -1;
    for (const host of this.hosts.values()) {
      const role = host.role();
      if (role !== null && role.state === StateType.Leader && role.term > bestTerm) {
        best = host;
        bestTerm = role.term;
      }
    }
    return best;
  }
}

function formatChange(cc: ConfChange): string {
  if (cc.changes.length === 0) return 'leave-joint';
  const names = ['add', 'remove', 'learner'];
  return cc.changes.map((c) => `${names[c.type]}(${c.nodeId})`).join(' ');
}

function formatMessage(m: Message): string {
  let s = `${MESSAGE_TYPE_NAMES[m.type]} t=${m.term} lt=${m.logTerm} i=${m.index} c=${m.commit}`;
  if (m.entries.length > 0)
    s += ` ents=${m.entries[0]!.index}..${m.entries[m.entries.length - 1]!.index}`;
  if (m.reject) s += ` reject hint=${m.rejectHint}`;
  if (m.snapshot !== null) s += ` snap=${m.snapshot.metadata.index}@${m.snapshot.metadata.term}`;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Running seeds

/** One seed of the raw simulator (the simulator's own node hosts): see runner.ts for all modes. */
export function runRawSeed(options: RunOptions): RunResult {
  let sim: Simulation | null = null;
  let failure: RunFailure | null = null;
  try {
    sim = new Simulation(options);
    sim.run(options.maxSteps ?? MAX_STEPS_DEFAULT);
  } catch (error) {
    failure = failureOf(error, sim?.queue.nowMs ?? 0);
  }
  const params = sim?.params ?? deriveParams(options.seed);
  return {
    seed: options.seed,
    params,
    paramsLine: formatParams(params),
    failure,
    traceHash: sim?.trace.hash() ?? '',
    traceLines: sim?.trace.lines ?? null,
    steps: sim?.steps ?? 0,
    virtualMs: sim?.queue.nowMs ?? 0,
    messagesSent: sim?.network.sentCount ?? 0,
    messagesDelivered: sim?.network.deliveredCount ?? 0,
    writesAcked: sim?.workload.writesAcked ?? 0,
    readsServed: sim?.workload.readsServed ?? 0,
    crashes: sim?.workload.crashes ?? 0,
    confChanges: sim?.workload.confChangesApplied ?? 0,
    leaderTerms: sim?.checker.leaderTermsCount ?? 0,
    checks: sim?.checker.checksCount ?? 0,
    livenessMs:
      sim === null || sim.livenessDoneMs < 0 ? -1 : sim.livenessDoneMs - sim.params.safetyMs,
  };
}
