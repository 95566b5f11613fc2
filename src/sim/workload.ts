/**
 * What happens to the cluster: clients (unique proposals, ReadIndex reads), the nemesis (crashes,
 * restarts, partitions, membership changes, leadership transfers) and the liveness probe.
 *
 * Only faults some member can survive (TigerBeetle's VOPR): a crash that lasts must leave a live
 * quorum in every configuration that matters (incoming, outgoing, and the pending change's
 * target); a "flash" crash (a restart within half an election timeout) may hit any node, and a
 * node that has just granted a vote may be crashed and restarted at once, to test that the vote
 * was durable. Membership changes go one at a time and only when the new configuration keeps a
 * live quorum; voters stay within [3, 7].
 */
import { VOTERS_MAX } from '../cluster/policy.js';
import { LEAVE_JOINT_CONF_CHANGE } from '../raft/codec.js';
import type { MemoryStorage } from '../raft/storage.js';
import {
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeType,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
} from '../raft/types.js';
import type { Prng } from '../util/prng.js';
import type { Checker } from './checker.js';
import type { SimNetwork } from './network.js';
import type { NodeHost } from './node.js';
import { FAULT_KINDS, type FaultKind, MEMBERS_MAX, type SimParams, VOTERS_MIN } from './params.js';
import type { EventQueue } from './queue.js';
import type { Phase } from './run.js';
import type { Trace } from './trace.js';

const TAG_WRITE = 1;
const TAG_MARKER = 2;
const TRACE_FAULT = 30;
const TRACE_CLIENT = 31;
/** Node ids are never reused; this bounds how many a run may create. */
const NODE_IDS_MAX = 40;

/** A membership change to propose, and the voters it leads to. */
interface Plan {
  readonly name: string;
  readonly changes: readonly ConfChangeSingle[];
  readonly voters: readonly NodeId[];
  /** Joint consensus is required (more than one voter changes, or a voter is demoted). */
  readonly joint: boolean;
  /** The host started for a learner being added. */
  readonly added?: NodeHost;
}

/**
 * The simulation as the workload and its nemesis drive it (simulator.ts's Simulation): the
 * workload sits below the run it serves, so this interface, not the class, is what it imports.
 */
export interface WorkloadWorld {
  readonly params: SimParams;
  readonly queue: EventQueue;
  readonly rng: Prng;
  readonly network: SimNetwork<Message>;
  readonly checker: Checker;
  readonly trace: Trace;
  readonly hosts: Map<NodeId, NodeHost>;
  readonly phase: Phase;
  readonly conf: { readonly index: number; readonly state: ConfState };
  leader(): NodeHost | null;
  addHost(id: NodeId, storage?: MemoryStorage): NodeHost;
  finishLiveness(): void;
  failLiveness(message: string): never;
}

export class Workload {
  private readonly rng: Prng;
  private valueNext = 1;
  private readNext = 1;
  /** Read id → the highest acknowledged write index when the read began. */
  private readonly readsPending = new Map<number, number>();
  private readonly acked = new Set<number>();
  private learnersToAdd: number;
  private nodeIdNext: number;
  /** The membership change in flight: proposed at, and the voters it leads to. */
  private change: { readonly atMs: number; readonly voters: readonly NodeId[] } | null = null;
  private markerIndex = 0;
  writesAcked = 0;
  readsServed = 0;
  crashes = 0;
  confChangesApplied = 0;

  constructor(private readonly sim: WorkloadWorld) {
    this.rng = sim.rng.fork();
    this.learnersToAdd = sim.params.learnersInitial;
    this.nodeIdNext = sim.params.voters + 1;
  }

  private get electionMs(): number {
    return this.sim.params.electionTicks * this.sim.params.tickMs;
  }

  start(): void {
    const p = this.sim.params;
    this.every(p.proposeEveryMs, () => this.propose());
    this.every(p.readEveryMs, () => this.read());
    this.every(p.nemesisEveryMs, () => this.nemesis());
    if (this.learnersToAdd > 0) this.every(this.electionMs, () => this.membership());
  }

  /** Repeats `fn` at exponentially distributed intervals of mean `meanMs` during the safety phase. */
  private every(meanMs: number, fn: () => void): void {
    const delayMs = -meanMs * Math.log(1 - this.rng.float());
    this.sim.queue.after(delayMs, () => {
      if (this.sim.phase !== 'safety') return;
      fn();
      this.every(meanMs, fn);
    });
  }

  private traceLine(text: string): void {
    if (this.sim.trace.enabled) this.sim.trace.line(this.sim.queue.nowMs, text);
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  private upHosts(): NodeHost[] {
    return [...this.sim.hosts.values()].filter((h) => h.up);
  }

  /** The leader most of the time, any up node otherwise (followers forward). */
  private pickTarget(): NodeHost | null {
    if (this.rng.chance(0.7)) {
      const leader = this.sim.leader();
      if (leader !== null) return leader;
    }
    const up = this.upHosts();
    return up.length === 0 ? null : this.rng.pick(up);
  }

  private propose(): void {
    const host = this.pickTarget();
    if (host === null) return;
    const id = this.valueNext++;
    const data = new Uint8Array(5 + this.rng.int(48));
    data[0] = TAG_WRITE;
    new DataView(data.buffer).setUint32(1, id);
    const ok = host.propose(data);
    this.sim.trace.mix(TRACE_CLIENT, 1, host.id, id, ok ? 1 : 0);
    this.traceLine(`client: write v${id} to n${host.id}${ok ? '' : ' (refused)'}`);
  }

  private read(): void {
    const host = this.pickTarget();
    if (host === null) return;
    const id = this.readNext++;
    const ctx = new Uint8Array(4);
    new DataView(ctx.buffer).setUint32(0, id);
    this.readsPending.set(id, this.sim.checker.maxAckedIndex);
    this.traceLine(
      `client: read r${id} at n${host.id}, acked so far ${this.sim.checker.maxAckedIndex}`,
    );
    const ok = host.readIndex(ctx);
    if (!ok) this.readsPending.delete(id);
    this.sim.trace.mix(TRACE_CLIENT, 2, host.id, id, ok ? 1 : 0);
    if (!ok) this.traceLine(`client: read r${id} refused`);
  }

  onApplied(node: NodeId, entry: Entry): void {
    const data = entry.data;
    if (data.length < 5) return;
    const id = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(1);
    if (data[0] === TAG_WRITE) {
      // Acknowledged when first applied anywhere: it is committed, and a client may see it.
      if (!this.acked.has(id)) {
        this.acked.add(id);
        this.writesAcked++;
        this.sim.checker.onAck(entry.index);
        this.traceLine(`client: write v${id} acknowledged at ${entry.index} (applied by n${node})`);
      }
    } else if (data[0] === TAG_MARKER && this.sim.phase === 'liveness') {
      if (this.markerIndex === 0) this.markerIndex = entry.index;
      this.checkLiveness();
    }
  }

  onReadServed(node: NodeId, ctx: Uint8Array, index: number): void {
    if (ctx.length !== 4) return;
    const id = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength).getUint32(0);
    const ackedAtStart = this.readsPending.get(id);
    if (ackedAtStart === undefined) return; // served twice (a duplicated response)
    this.readsPending.delete(id);
    this.readsServed++;
    this.traceLine(`client: read r${id} served by n${node} at index ${index}`);
    this.sim.checker.onReadServed(node, id, index, ackedAtStart);
  }

  // -------------------------------------------------------------------------------------------
  // Nemesis

  private nemesis(): void {
    const weights = this.sim.params.faultWeights;
    let total = 0;
    for (const kind of FAULT_KINDS) total += weights[kind];
    if (total === 0) return;
    let r = this.rng.int(total);
    let kind: FaultKind = FAULT_KINDS[0];
    for (const k of FAULT_KINDS) {
      if (r < weights[k]) {
        kind = k;
        break;
      }
      r -= weights[k];
    }
    this.fault(kind);
  }

  private fault(kind: FaultKind): void {
    const sim = this.sim;
    const members = this.memberIds();
    const ids = [...sim.hosts.keys()];
    const electionMs = this.electionMs;
    switch (kind) {
      case 'crash': {
        const candidates = this.upHosts().filter((h) => this.canCrash(h.id));
        if (candidates.length === 0) return;
        const host = this.preferLeader(candidates);
        this.crash(host, electionMs + this.rng.float() * sim.params.safetyMs * 0.3);
        return;
      }
      case 'flash-crash': {
        const up = this.upHosts();
        if (up.length === 0) return;
        this.crash(this.preferLeader(up), (this.rng.float() * electionMs) / 2);
        return;
      }
      case 'restart': {
        const down = [...sim.hosts.values()].filter((h) => h.state === 'down');
        if (down.length === 0) return;
        const host = this.rng.pick(down);
        this.traceFault(`restart n${host.id}`, 3, host.id);
        host.start();
        return;
      }
      case 'isolate': {
        if (members.length === 0) return;
        const leader = sim.leader();
        const id = leader !== null && this.rng.chance(0.5) ? leader.id : this.rng.pick(members);
        this.traceFault(`isolate n${id}`, 4, id);
        sim.network.isolate(id, ids);
        this.healLater();
        return;
      }
      case 'split': {
        // The leader lands in the minority half of the time (its term's entries then diverge).
        const leader = sim.leader();
        const shuffled = this.shuffle(members);
        if (leader !== null && shuffled.includes(leader.id) && this.rng.chance(0.5)) {
          shuffled.splice(shuffled.indexOf(leader.id), 1);
          shuffled.unshift(leader.id);
        }
        const minority = shuffled.slice(
          0,
          1 + this.rng.int(Math.max(1, Math.floor(shuffled.length / 2))),
        );
        const rest = ids.filter((id) => !minority.includes(id));
        const symmetric = this.rng.chance(0.7);
        this.traceFault(
          `split ${minority.join(',')} | ${rest.join(',')}${symmetric ? '' : ' (one way)'}`,
          5,
          minority.length,
        );
        if (this.rng.chance(0.5)) sim.network.split(minority, rest, symmetric);
        else sim.network.split(rest, minority, symmetric);
        this.healLater();
        return;
      }
      case 'asymmetric': {
        if (members.length < 2) return;
        const a = this.rng.pick(members);
        if (this.rng.chance(0.5)) {
          // The node can hear but not speak (or the other way around).
          const others = ids.filter((x) => x !== a);
          const outbound = this.rng.chance(0.5);
          this.traceFault(`cut n${a} ${outbound ? 'outbound' : 'inbound'}`, 6, a);
          if (outbound) sim.network.split([a], others, false);
          else sim.network.split(others, [a], false);
        } else {
          const b = this.rng.pick(members.filter((x) => x !== a));
          this.traceFault(`cut n${a}→n${b}`, 7, a, b);
          sim.network.cutLink(a, b);
        }
        this.healLater();
        return;
      }
      case 'heal':
        this.traceFault('heal', 8);
        sim.network.healAll();
        return;
      case 'swizzle':
        this.swizzle(members, ids);
        return;
      case 'membership':
        this.membership();
        return;
      case 'transfer': {
        const leader = sim.leader();
        const voters = sim.conf.state.voters.filter((v) => v !== leader?.id);
        if (leader === null || voters.length === 0) return;
        const to = this.rng.pick(voters);
        this.traceFault(`transfer leadership n${leader.id}→n${to}`, 9, leader.id, to);
        leader.transferLeader(to);
        return;
      }
    }
  }

  /**
   * FoundationDB's swizzle-clog: cut off a random subset of nodes one by one, then reconnect them
   * one by one in another random order. Leadership moves between nodes whose logs have diverged,
   * which is where commit-rule bugs (Raft paper figure 8) show.
   */
  private swizzle(members: readonly NodeId[], ids: readonly NodeId[]): void {
    if (members.length < 2) return;
    const chosen = this.shuffle(members).slice(0, 1 + this.rng.int(members.length - 1));
    const stepMs = this.electionMs * (0.2 + this.rng.float());
    this.traceFault(`swizzle ${chosen.join(',')} every ${stepMs.toFixed(1)}ms`, 13, chosen.length);
    const clogged = new Set<NodeId>();
    let atMs = 0;
    for (const id of chosen) {
      atMs += this.rng.float() * stepMs;
      this.sim.queue.after(atMs, () => {
        if (this.sim.phase !== 'safety') return;
        clogged.add(id);
        this.sim.network.isolate(id, ids);
      });
    }
    for (const id of this.shuffle(chosen)) {
      atMs += this.rng.float() * stepMs * 2;
      this.sim.queue.after(atMs, () => {
        if (this.sim.phase !== 'safety') return;
        clogged.delete(id);
        for (const other of ids) {
          if (clogged.has(other)) continue;
          this.sim.network.restoreLink(id, other);
          this.sim.network.restoreLink(other, id);
        }
      });
    }
  }

  /** The leader half of the time when it is a candidate for the fault: leaders matter most. */
  private preferLeader(candidates: readonly NodeHost[]): NodeHost {
    const leader = this.sim.leader();
    if (leader !== null && candidates.includes(leader) && this.rng.chance(0.5)) return leader;
    return this.rng.pick(candidates);
  }

  private traceFault(text: string, code: number, a = 0, b = 0): void {
    this.sim.trace.mix(TRACE_FAULT, code, a, b);
    this.traceLine(`nemesis: ${text}`);
  }

  /** Heals after one to three election timeouts half of the time, up to 30% of the phase else. */
  private healLater(): void {
    const delayMs = this.rng.chance(0.5)
      ? this.electionMs * (1 + this.rng.float() * 2)
      : this.rng.float() * this.sim.params.safetyMs * 0.3;
    this.sim.queue.after(delayMs, () => {
      if (this.sim.phase !== 'safety') return;
      this.traceFault('heal (timed)', 8);
      this.sim.network.healAll();
    });
  }

  private crash(host: NodeHost, downMs: number): void {
    this.traceFault(`crash n${host.id} for ${downMs.toFixed(1)}ms`, 1, host.id, downMs);
    host.crash();
    this.crashes++;
    this.sim.queue.after(downMs, () => {
      if (host.state === 'down' && this.sim.phase === 'safety') {
        this.traceFault(`restart n${host.id}`, 2, host.id);
        host.start();
      }
    });
  }

  /** A node just granted a vote: now and then crash it at once and restart it quickly. */
  onVoteGranted(node: NodeId): void {
    const rate = this.sim.params.crashAfterVoteRate;
    if (this.sim.phase !== 'safety' || rate === 0 || !this.rng.chance(rate)) return;
    const host = this.sim.hosts.get(node)!;
    const downMs = this.rng.float() * this.sim.params.network.latencyBaseMs * 2;
    this.sim.queue.after(0, () => {
      if (host.up && this.sim.phase === 'safety') this.crash(host, downMs);
    });
  }

  /**
   * A node just became leader: now and then crash or isolate it within a few message latencies,
   * before its entries (at least its empty entry of the new term) reach a quorum.
   */
  onLeaderElected(node: NodeId, term: number): void {
    const p = this.sim.params;
    const delayMs = this.rng.float() * 3 * (p.network.latencyBaseMs + p.network.latencyTailMeanMs);
    this.leaderFault(node, term, delayMs);
  }

  /**
   * A new leader just committed for the first time in its term: now and then cut it off at once,
   * so what it committed must survive without it (its own entries may not have spread yet).
   */
  onLeaderFirstCommit(node: NodeId, term: number): void {
    this.leaderFault(node, term, 0);
  }

  private leaderFault(node: NodeId, term: number, delayMs: number): void {
    const p = this.sim.params;
    if (
      this.sim.phase !== 'safety' ||
      p.leaderFaultRate === 0 ||
      !this.rng.chance(p.leaderFaultRate)
    )
      return;
    const crash = this.rng.chance(0.25);
    this.sim.queue.after(delayMs, () => {
      const host = this.sim.hosts.get(node)!;
      if (!host.up || this.sim.phase !== 'safety') return;
      const electionMs = this.electionMs;
      if (crash) {
        const long = this.canCrash(node) && this.rng.chance(0.5);
        this.crash(
          host,
          long ? electionMs * (1 + this.rng.float() * 5) : this.rng.float() * electionMs,
        );
      } else {
        // Isolated, it goes on taking client writes in its term; back soon, it may win again.
        const ids = [...this.sim.hosts.keys()];
        this.traceFault(`isolate new leader n${node} of term ${term}`, 12, node, term);
        this.sim.network.isolate(node, ids);
        this.sim.queue.after(electionMs * (0.5 + this.rng.float() * 2), () => {
          if (this.sim.phase !== 'safety') return;
          this.traceFault(`reconnect n${node}`, 14, node);
          for (const other of ids) {
            this.sim.network.restoreLink(node, other);
            this.sim.network.restoreLink(other, node);
          }
        });
      }
    });
  }

  /** Voter sets whose quorum must stay alive: incoming, outgoing, and a pending change's. */
  private voterSets(): (readonly NodeId[])[] {
    const cs = this.sim.conf.state;
    const sets: (readonly NodeId[])[] = [cs.voters];
    if (cs.votersOutgoing.length > 0) sets.push(cs.votersOutgoing);
    if (this.change !== null) sets.push(this.change.voters);
    return sets;
  }

  private canCrash(id: NodeId): boolean {
    return this.voterSets().every((set) => this.liveQuorum(set, id));
  }

  /** True when the up voters of `set`, less `without`, are a majority of it. */
  private liveQuorum(set: readonly NodeId[], without: NodeId = 0): boolean {
    let alive = 0;
    for (const id of set) if (id !== without && this.sim.hosts.get(id)?.up) alive++;
    return alive > set.length / 2;
  }

  private memberIds(): NodeId[] {
    const cs = this.sim.conf.state;
    return [...new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners])].sort((a, b) => a - b);
  }

  private shuffle<T>(items: readonly T[]): T[] {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Membership

  onConfChanged(): void {
    this.confChangesApplied++;
    if (this.sim.conf.state.votersOutgoing.length === 0) this.change = null;
  }

  private membership(): void {
    const sim = this.sim;
    const leader = sim.leader();
    if (leader === null) return;
    const now = sim.queue.nowMs;
    const cs = sim.conf.state;
    if (cs.votersOutgoing.length > 0) {
      if (!cs.autoLeave) {
        this.traceFault('membership: leave joint', 10);
        leader.proposeConfChange(LEAVE_JOINT_CONF_CHANGE);
      }
      return;
    }
    if (this.change !== null && now - this.change.atMs < 20 * this.electionMs) return;
    const plan = this.planChange(leader.id);
    if (plan === null) return;
    const cc: ConfChange = {
      transition: plan.joint
        ? this.rng.pick([1, 2] as const)
        : this.rng.pick([0, 0, 1, 2] as const),
      changes: plan.changes,
      context: new Uint8Array(0),
    };
    const ok = leader.proposeConfChange(cc);
    // A learner whose addition was refused will never be contacted: stop its host.
    if (!ok && plan.added !== undefined) plan.added.stop();
    this.traceFault(
      `membership: ${plan.name} (${['auto', 'joint-implicit', 'joint-explicit'][cc.transition]})${ok ? '' : ' dropped'}`,
      11,
      plan.changes[0]!.nodeId,
    );
    if (ok) this.change = { atMs: now, voters: plan.voters };
  }

  private planChange(leaderId: NodeId): Plan | null {
    const sim = this.sim;
    const cs = sim.conf.state;
    const voters = cs.voters;
    const learners = cs.learners.filter((id) => sim.hosts.get(id)?.up);
    const options: string[] = [];
    const members = voters.length + cs.learners.length;
    if (members < MEMBERS_MAX && this.nodeIdNext <= NODE_IDS_MAX) options.push('add-learner');
    if (this.learnersToAdd > 0 && options.length > 0) return this.addLearner(voters);
    if (learners.length > 0 && voters.length < VOTERS_MAX) options.push('promote');
    if (voters.length > VOTERS_MIN) options.push('demote', 'remove-voter');
    if (cs.learners.length > 0) options.push('remove-learner');
    if (learners.length > 0) options.push('replace');
    if (options.length === 0) return null;
    const op = this.rng.pick(options);
    const { AddNode, RemoveNode, AddLearnerNode } = ConfChangeType;
    switch (op) {
      case 'add-learner':
        return this.addLearner(voters);
      case 'promote': {
        const id = this.rng.pick(learners);
        return this.checked(
          `promote n${id}`,
          [{ type: AddNode, nodeId: id }],
          [...voters, id],
          false,
        );
      }
      case 'demote': {
        const id = this.rng.pick(voters);
        const next = voters.filter((v) => v !== id);
        return this.checked(`demote n${id}`, [{ type: AddLearnerNode, nodeId: id }], next, true);
      }
      case 'remove-voter': {
        const id = this.rng.pick(
          voters
            .filter((v) => v !== leaderId)
            .concat(voters)
            .slice(0, voters.length),
        );
        const next = voters.filter((v) => v !== id);
        return this.checked(`remove voter n${id}`, [{ type: RemoveNode, nodeId: id }], next, false);
      }
      case 'remove-learner': {
        const id = this.rng.pick(cs.learners);
        return {
          name: `remove learner n${id}`,
          changes: [{ type: RemoveNode, nodeId: id }],
          voters: [...voters],
          joint: false,
        };
      }
      case 'replace': {
        const add = this.rng.pick(learners);
        const remove = this.rng.pick(voters);
        const next = voters.filter((v) => v !== remove).concat(add);
        return this.checked(
          `replace voter n${remove} with n${add}`,
          [
            { type: AddNode, nodeId: add },
            { type: RemoveNode, nodeId: remove },
          ],
          next,
          true,
        );
      }
      default:
        return null;
    }
  }

  private addLearner(voters: readonly NodeId[]): Plan {
    const id = this.nodeIdNext++;
    this.learnersToAdd = Math.max(0, this.learnersToAdd - 1);
    const host = this.sim.addHost(id);
    host.start();
    return {
      name: `add learner n${id}`,
      changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: id }],
      voters: [...voters],
      joint: false,
      added: host,
    };
  }

  /** The change only if both the current and the new voter sets keep a live quorum. */
  private checked(
    name: string,
    changes: ConfChangeSingle[],
    next: NodeId[],
    joint: boolean,
  ): Plan | null {
    if (!this.liveQuorum(this.sim.conf.state.voters) || !this.liveQuorum(next)) return null;
    return { name, changes, voters: next, joint };
  }

  // -------------------------------------------------------------------------------------------
  // Liveness phase

  startLiveness(): void {
    const probeMs = this.sim.params.tickMs * 2;
    const deadlineMs = this.sim.queue.nowMs + this.sim.params.livenessMs;
    let lastProposalMs = Number.NEGATIVE_INFINITY;
    let lastLeaveMs = Number.NEGATIVE_INFINITY;
    const probe = (): void => {
      if (this.sim.phase !== 'liveness') return;
      if (this.sim.queue.nowMs >= deadlineMs) {
        this.sim.failLiveness(
          this.markerIndex === 0
            ? `no proposal committed within ${this.sim.params.livenessMs}ms of healing`
            : `proposal committed at ${this.markerIndex} not applied by every member within ` +
                `${this.sim.params.livenessMs}ms of healing`,
        );
      }
      // A joint configuration that must be left explicitly is the application's to leave.
      const cs = this.sim.conf.state;
      const leader = this.sim.leader();
      if (leader !== null && cs.votersOutgoing.length > 0 && !cs.autoLeave) {
        if (this.sim.queue.nowMs - lastLeaveMs >= this.electionMs) {
          lastLeaveMs = this.sim.queue.nowMs;
          leader.proposeConfChange(LEAVE_JOINT_CONF_CHANGE);
        }
      }
      if (
        this.markerIndex === 0 &&
        leader !== null &&
        this.sim.queue.nowMs - lastProposalMs >= this.electionMs
      ) {
        lastProposalMs = this.sim.queue.nowMs;
        const data = new Uint8Array(5);
        data[0] = TAG_MARKER;
        new DataView(data.buffer).setUint32(1, this.valueNext++);
        leader.propose(data);
      }
      this.checkLiveness();
      this.sim.queue.after(probeMs, probe);
    };
    this.sim.queue.after(0, probe);
  }

  private checkLiveness(): void {
    if (this.markerIndex === 0 || this.sim.phase !== 'liveness') return;
    const members = new Set(this.memberIds());
    for (const host of this.sim.hosts.values()) {
      if (members.has(host.id) && host.sm.appliedIndex < this.markerIndex) return;
    }
    this.traceLine(`liveness: marker at ${this.markerIndex} applied by every member`);
    this.sim.finishLiveness();
  }
}
