/**
 * The world of the golden scenarios (golden.test.ts, testdata/*.txt): a registry, a Raft
 * configuration and replication progress, who is heard, a clock, and one PolicyMemory per member,
 * driven through src/cluster/round.ts exactly as src/server/redundancy.ts drives it. Each command
 * returns the lines it prints; the output is canonical (sorted, fixed formats).
 *
 * Commands (durations: 250ms, 10s, 1.5s, 1h):
 *   policy [voters=3] [replace-after=10s] [silent-after=1s] [stability=5s] [lag-max=1000]
 *          [catch-up=100] [prefer-same-zone=true] [election=1s] [prefer-leader-zone=b]
 *          [bugs=double-promote,...]      what is not given stays as it was
 *   members            then one line per member: n1 voter|replica [zone=a]
 *                      or n4 standby hot|warm|cold [zone=a] [every=60s]; all heard at start
 *   leader n1 [term=1] this member leads (its round plans; the others only take note)
 *   elect n2           a new leader in the next term (a transfer completed, an election won)
 *   advance 10s        time passes; members up are heard throughout
 *   down n2 ...        not heard from now on          up n2 ...    heard again from now on
 *   lag n4=300 ...     entries behind the commit index (members in the configuration)
 *   pending on|off     a membership change of someone else's is pending in Raft
 *   round              every member's round at this instant; prints the leader's
 *   run 10s            a round every POLICY_INTERVAL_MS for 10s, each act committed at once;
 *                      prints the rounds that act or whose note changes, then the health
 *   commit             the act in flight applies (as its log entry would); prints the registry
 *   fail               the act in flight fails (its proposal dropped)
 *   manual promote|demote|standby n4 [on=n1]   an operator's request
 *   memory [n2]        a member's policy memory (default: the leader's)
 *   registry           the registry and the configuration
 */
import type { RegistryCommand, Role, StandbyMode } from '../../src/cluster/commands.js';
import { POLICY_BUG_NAMES, type PolicyBugName } from '../../src/cluster/health.js';
import { PolicyMemory } from '../../src/cluster/memory.js';
import {
  type ManualOp,
  makePolicy,
  membershipBlocked,
  PolicyError,
  type RedundancyPolicy,
} from '../../src/cluster/policy.js';
import { MemberRegistry, RegistryError } from '../../src/cluster/registry.js';
import {
  type Act,
  manualAct,
  type Observed,
  observeRound,
  planRound,
  type RoundResult,
  type RoundSettings,
} from '../../src/cluster/round.js';
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  type NodeId,
  type ProgressStatus,
  type RaftStatus,
  StateType,
} from '../../src/raft/types.js';
import { POLICY_INTERVAL_MS } from '../../src/server/redundancy.js';
import { AssertionError } from '../../src/util/assert.js';

/** Wall clock = this + the scenario's clock; printed as `wall+<ms>`. */
const WALL_EPOCH_MS = 1_700_000_000_000;
const COMMIT_INDEX = 10_000;
/** Members of a scenario at most (ids n1..n9). */
const SCENARIO_MEMBERS_MAX = 9;

export class ScenarioError extends Error {}

function fail(message: string): never {
  throw new ScenarioError(message);
}

export function parseDurationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text);
  if (m === null) fail(`bad duration ${text}`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

function parseId(text: string): NodeId {
  const m = /^n([1-9])$/.exec(text);
  if (m === null) fail(`bad member ${text} (n1..n${SCENARIO_MEMBERS_MAX})`);
  return Number(m[1]);
}

/** `key=value` arguments; bare words come back under their position. */
function parseArgs(words: readonly string[]): Map<string, string> {
  const args = new Map<string, string>();
  words.forEach((w, i) => {
    const eq = w.indexOf('=');
    if (eq < 0) args.set(String(i), w);
    else args.set(w.slice(0, eq), w.slice(eq + 1));
  });
  return args;
}

const n = (id: NodeId): string => `n${id}`;
const ids = (list: readonly NodeId[]): string => `[${list.map(n).join(',')}]`;
const wall = (ms: number): string => `wall+${ms - WALL_EPOCH_MS}`;
const TYPE_NAMES = ['AddNode', 'RemoveNode', 'AddLearnerNode'] as const;

function describeChange(change: ConfChange): string {
  const parts = change.changes.map((c) => `${TYPE_NAMES[c.type]}(${n(c.nodeId)})`);
  const joint = change.transition === ConfChangeTransition.JointImplicit ? ' joint' : '';
  return `${parts.join(' ')}${joint}`;
}

function describeCommand(c: RegistryCommand): string {
  switch (c.kind) {
    case 'record-health':
      return `record-health(${n(c.id)} ${c.health}@${c.sinceMs})`;
    case 'record-refresh':
      return `record-refresh(${n(c.id)} ${wall(c.atMs)})`;
    case 'record-promotion':
      return `record-promotion(${n(c.id)}@${c.atMs})`;
    case 'record-demotion':
      return `record-demotion(${n(c.id)}@${c.atMs} ${c.role})`;
    case 'set-role':
      return `set-role(${n(c.id)} ${c.role})`;
    case 'set-standby':
      return `set-standby(${n(c.id)} ${c.mode})`;
    default:
      return `${c.kind}(${n(c.id)})`;
  }
}

export function describeAct(act: Act): string {
  switch (act.kind) {
    case 'conf-change':
      return `conf-change ${act.event}: ${describeChange(act.change)}: ${act.reason}`;
    case 'registry':
      return `registry ${describeCommand(act.command)}: ${act.reason}`;
    case 'transfer-leader':
      return `transfer-leader to ${n(act.to)}: ${act.reason}`;
  }
}

function describeMs(map: ReadonlyMap<NodeId, number>, fmt = (ms: number) => String(ms)): string {
  const parts = [...map].sort(([a], [b]) => a - b).map(([id, ms]) => `${n(id)}@${fmt(ms)}`);
  return `{${parts.join(' ')}}`;
}

export class Scenario {
  private policy: RedundancyPolicy = makePolicy({
    voters: 3,
    replaceAfterMs: 10_000,
    silentAfterMs: 1_000,
    stabilityMs: 5_000,
  });
  private electionTimeoutMs = 1_000;
  private preferLeaderZone: string | null = null;
  private nowMs = 0;
  private registry = MemberRegistry.bootstrap([]);
  private leader: NodeId = 0;
  private term = 0;
  /** Match index per member in the configuration. */
  private readonly match = new Map<NodeId, number>();
  private readonly up = new Set<NodeId>();
  private readonly lastHeardMs = new Map<NodeId, number>();
  private readonly memories = new Map<NodeId, PolicyMemory>();
  private inFlight: Act | null = null;
  private raftPending = false;
  /** The leader's last round's note (`run` prints only changes). */
  private lastNote = '';

  /** Runs one command (its first line, then its input lines); returns what it prints. */
  run(command: string, input: readonly string[]): string[] {
    const [name, ...words] = command.trim().split(/\s+/);
    const args = parseArgs(words);
    switch (name) {
      case 'policy':
        return this.setPolicy(args);
      case 'members':
        return this.setMembers(input);
      case 'leader':
        return this.setLeader(parseId(args.get('0') ?? ''), Number(args.get('term') ?? 1));
      case 'elect':
        return this.setLeader(parseId(args.get('0') ?? ''), this.term + 1);
      case 'advance':
        return this.advance(parseDurationMs(args.get('0') ?? ''));
      case 'down':
      case 'up':
        return this.setUp(words.map(parseId), name === 'up');
      case 'lag':
        return this.setLag(args);
      case 'pending':
        this.raftPending = args.get('0') === 'on';
        return [`raft pending: ${this.raftPending ? 'yes' : 'no'}`];
      case 'round':
        return this.round();
      case 'run':
        return this.runFor(parseDurationMs(args.get('0') ?? ''));
      case 'commit':
        return this.commit();
      case 'fail':
        return this.failAct();
      case 'manual':
        return this.manual(args);
      case 'memory':
        return this.printMemory(args.has('0') ? parseId(args.get('0')!) : this.leader);
      case 'registry':
        return this.printRegistry();
      default:
        return fail(`unknown command ${name}`);
    }
  }

  private setPolicy(args: Map<string, string>): string[] {
    const ms = (key: string, dflt: number) =>
      args.has(key) ? parseDurationMs(args.get(key)!) : dflt;
    const int = (key: string, dflt: number) => (args.has(key) ? Number(args.get(key)) : dflt);
    const p = this.policy;
    const bugs = args.has('bugs')
      ? args
          .get('bugs')!
          .split(',')
          .filter((b) => b !== '')
      : [...(p.bugs ?? [])];
    for (const b of bugs) {
      if (!(POLICY_BUG_NAMES as readonly string[]).includes(b)) fail(`unknown bug ${b}`);
    }
    this.policy = makePolicy({
      voters: int('voters', p.voters),
      replaceAfterMs: ms('replace-after', p.replaceAfterMs),
      silentAfterMs: ms('silent-after', p.silentAfterMs),
      stabilityMs: ms('stability', p.stabilityMs),
      lagEntriesMax: int('lag-max', p.lagEntriesMax),
      catchUpEntriesMax: int('catch-up', p.catchUpEntriesMax),
      preferSameZone: args.has('prefer-same-zone')
        ? args.get('prefer-same-zone') === 'true'
        : p.preferSameZone,
      bugs: new Set(bugs as PolicyBugName[]),
    });
    this.electionTimeoutMs = ms('election', this.electionTimeoutMs);
    this.preferLeaderZone = args.get('prefer-leader-zone') ?? this.preferLeaderZone;
    const q = this.policy;
    return [
      `voters=${q.voters} replace-after=${q.replaceAfterMs}ms silent-after=${q.silentAfterMs}ms ` +
        `stability=${q.stabilityMs}ms lag-max=${q.lagEntriesMax} catch-up=${q.catchUpEntriesMax} ` +
        `election=${this.electionTimeoutMs}ms prefer-leader-zone=${this.preferLeaderZone ?? '-'} ` +
        `bugs=${[...(q.bugs ?? [])].join(',') || '-'}`,
    ];
  }

  private setMembers(lines: readonly string[]): string[] {
    const founders = lines.map((line) => {
      const [idText, role, ...rest] = line.trim().split(/\s+/);
      const id = parseId(idText ?? '');
      if (role !== 'voter' && role !== 'replica' && role !== 'standby') fail(`bad role ${role}`);
      const args = parseArgs(rest);
      const mode = (role === 'standby' ? args.get('0') : 'hot') as StandbyMode;
      if (!['hot', 'warm', 'cold'].includes(mode)) fail(`bad standby mode ${mode}`);
      return {
        id,
        name: n(id),
        peerUrls: [`http://10.0.0.${id}:2380`],
        clientUrls: [],
        role: role as Role,
        standbyMode: mode,
        zone: args.get('zone') ?? 'a',
        everyMs: args.has('every') ? parseDurationMs(args.get('every')!) : null,
      };
    });
    this.registry = MemberRegistry.bootstrap(founders);
    for (const f of founders) {
      if (f.everyMs !== null) {
        this.registry.applyCommand({
          kind: 'set-standby',
          id: f.id,
          mode: f.standbyMode,
          snapshotEveryMs: f.everyMs,
        });
      }
      this.memories.set(f.id, new PolicyMemory());
      this.up.add(f.id);
      this.lastHeardMs.set(f.id, this.nowMs);
    }
    this.syncProgress();
    for (const id of this.match.keys()) this.match.set(id, COMMIT_INDEX); // founders: caught up
    return this.printRegistry();
  }

  private setLeader(id: NodeId, term: number): string[] {
    if (this.registry.get(id) === undefined) fail(`no member ${n(id)}`);
    this.leader = id;
    this.term = term;
    return [`leader ${n(id)} term ${term}`];
  }

  private advance(ms: number): string[] {
    this.nowMs += ms;
    for (const id of this.up) this.lastHeardMs.set(id, this.nowMs);
    return [`t=${this.nowMs}`];
  }

  private setUp(list: readonly NodeId[], up: boolean): string[] {
    for (const id of list) {
      if (up) {
        this.up.add(id);
        this.lastHeardMs.set(id, this.nowMs);
      } else {
        this.up.delete(id);
      }
    }
    return [`up: ${ids([...this.up].sort((a, b) => a - b))}`];
  }

  private setLag(args: Map<string, string>): string[] {
    for (const [key, value] of args) {
      const id = parseId(key);
      if (!this.match.has(id)) fail(`${key} is outside the configuration: no progress`);
      this.match.set(id, COMMIT_INDEX - Number(value));
    }
    return [this.describeLag()];
  }

  private describeLag(): string {
    const parts = [...this.match]
      .sort(([a], [b]) => a - b)
      .map(([id, match]) => `${n(id)}=${COMMIT_INDEX - match}`);
    return `lag: ${parts.join(' ')}`;
  }

  private settings(): RoundSettings {
    return {
      policy: this.policy,
      electionTimeoutMs: this.electionTimeoutMs,
      preferLeaderZone: this.preferLeaderZone,
    };
  }

  private config(): ConfState {
    const all = this.registry.all();
    return {
      voters: all.filter((m) => m.placement === 'voter').map((m) => m.id),
      learners: all.filter((m) => m.placement === 'learner').map((m) => m.id),
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    };
  }

  /** What member `self` observes now, as the driver assembles it. */
  private observed(self: NodeId): Observed {
    const leads = self === this.leader;
    const config = this.config();
    const progress = new Map<NodeId, ProgressStatus>();
    if (leads) {
      for (const [id, match] of this.match) {
        progress.set(id, {
          match,
          next: match + 1,
          state: 'replicate',
          isLearner: !config.voters.includes(id),
          // The leader's own progress is always active; the peers' count by lastHeardMs.
          recentActive: id === self,
          inflightMsgs: 0,
          pendingSnapshot: 0,
        });
      }
    }
    const status: RaftStatus = {
      id: self,
      term: this.term,
      vote: this.leader,
      commit: COMMIT_INDEX,
      applied: COMMIT_INDEX,
      lastIndex: COMMIT_INDEX,
      lead: this.leader,
      raftState: leads ? StateType.Leader : StateType.Follower,
      leadTransferee: 0,
      config,
      progress,
    };
    const heard = new Map([...this.lastHeardMs].filter(([id]) => id !== self));
    return {
      nowMs: this.nowMs,
      wallNowMs: WALL_EPOCH_MS + this.nowMs,
      isLeader: leads,
      status,
      members: this.registry.all(),
      lastHeardMs: heard,
      pendingConfChange: this.raftPending || this.inFlight?.kind === 'conf-change',
      actInFlight: this.inFlight !== null,
    };
  }

  /** Every member's round; the leader's result (or its assertion) is what the round printed. */
  private roundAll(): RoundResult | { readonly assertion: string } {
    let leaderResult: RoundResult | null = null;
    for (const m of this.registry.all()) {
      const memory = this.memories.get(m.id) ?? new PolicyMemory();
      this.memories.set(m.id, memory);
      try {
        const result = planRound(memory, this.settings(), this.observed(m.id));
        if (m.id === this.leader) leaderResult = result;
        else if (result.act !== null) fail(`follower ${n(m.id)} acted`);
      } catch (error) {
        if (!(error instanceof AssertionError)) throw error;
        return { assertion: error.message };
      }
    }
    if (leaderResult === null) fail(`leader ${n(this.leader)} is not registered`);
    if (leaderResult.act !== null && leaderResult.act.kind !== 'transfer-leader') {
      this.inFlight = leaderResult.act;
    }
    this.lastNote = leaderResult.note;
    return leaderResult;
  }

  private round(): string[] {
    const r = this.roundAll();
    if ('assertion' in r) return [`assertion: ${r.assertion}`];
    const act = r.act === null ? `act: none: ${r.note}` : `act: ${describeAct(r.act)}`;
    return [act, ...this.describeView(r), ...this.printMemory(this.leader)];
  }

  /** The leader's health view and whether it may change the membership. */
  private describeView(r: RoundResult): string[] {
    const view = r.view;
    if (view === null) return [];
    const health = view.members.map((m) => {
      const h = view.health.get(m.id);
      return h === undefined ? `${n(m.id)} -` : `${n(m.id)} ${h.state}@${h.sinceMs}`;
    });
    const blocked = membershipBlocked(view, this.policy);
    return [
      `health: ${health.join(' ')}`,
      `quorum: ${view.quorumActive ? 'heard' : 'not heard'}; changes: ${blocked ?? 'allowed'}`,
    ];
  }

  private runFor(ms: number): string[] {
    const lines: string[] = [];
    let last: RoundResult | null = null;
    for (let elapsed = 0; elapsed < ms; elapsed += POLICY_INTERVAL_MS) {
      this.advance(Math.min(POLICY_INTERVAL_MS, ms - elapsed));
      const lastNote = this.lastNote;
      const r = this.roundAll();
      if ('assertion' in r) {
        lines.push(`t=${this.nowMs} assertion: ${r.assertion}`);
        break;
      }
      if (r.act !== null) {
        lines.push(`t=${this.nowMs} act: ${describeAct(r.act)}`);
        if (this.inFlight !== null) lines.push(...this.apply().map((l) => `  ${l}`));
      } else if (r.note !== lastNote) {
        lines.push(`t=${this.nowMs} act: none: ${r.note}`);
      }
      last = r;
    }
    const health = last === null ? [] : this.describeView(last).slice(0, 1);
    return [...(lines.length > 0 ? lines : ['no act, no new note']), ...health];
  }

  private commit(): string[] {
    if (this.inFlight === null) fail('no act in flight');
    return [...this.apply(), ...this.printRegistry()];
  }

  /** The act in flight takes effect: its entry is committed and applied. */
  private apply(): string[] {
    const act = this.inFlight!;
    this.inFlight = null;
    if (act.kind === 'registry') {
      try {
        this.registry.applyCommand(act.command);
        return [`applied ${describeCommand(act.command)}`];
      } catch (error) {
        if (!(error instanceof RegistryError)) throw error;
        return [`rejected ${describeCommand(act.command)}: ${error.code}`];
      }
    }
    if (act.kind !== 'conf-change') fail('a transfer is never in flight');
    this.registry.applyConfChange(this.configAfter(act.change), act.change);
    this.syncProgress();
    return [`applied ${describeChange(act.change)}`];
  }

  /** The configuration after `change`, joint changes left at once (auto-leave). */
  private configAfter(change: ConfChange): ConfState {
    const c = this.config();
    const voters = new Set(c.voters);
    const learners = new Set(c.learners);
    for (const s of change.changes) {
      voters.delete(s.nodeId);
      learners.delete(s.nodeId);
      if (s.type === ConfChangeType.AddNode) voters.add(s.nodeId);
      if (s.type === ConfChangeType.AddLearnerNode) learners.add(s.nodeId);
    }
    const sorted = (s: Set<NodeId>) => [...s].sort((a, b) => a - b);
    return { ...c, voters: sorted(voters), learners: sorted(learners) };
  }

  /** Progress for exactly the members in the configuration; a newcomer has nothing yet. */
  private syncProgress(): void {
    const inside = new Set(this.registry.list().map((m) => m.id));
    for (const id of inside) if (!this.match.has(id)) this.match.set(id, 0);
    for (const id of [...this.match.keys()]) if (!inside.has(id)) this.match.delete(id);
    if (this.registry.get(this.leader) !== undefined) this.match.set(this.leader, COMMIT_INDEX);
  }

  private failAct(): string[] {
    if (this.inFlight === null) fail('no act in flight');
    const act = this.inFlight;
    this.inFlight = null;
    return [`dropped ${act.kind} ${act.event}`];
  }

  private manual(args: Map<string, string>): string[] {
    const op = args.get('0') as ManualOp;
    if (!['promote', 'demote', 'standby'].includes(op)) fail(`bad manual op ${op}`);
    const target = n(parseId(args.get('1') ?? ''));
    const on = args.has('on') ? parseId(args.get('on')!) : this.leader;
    const memory = this.memories.get(on)!;
    const observed = this.observed(on);
    const seen = observeRound(memory, this.settings(), observed);
    if (seen.view === null) return [`refused: NOT_LEADER: ${seen.note}`];
    try {
      const act = manualAct(seen.view, this.settings(), observed, op, target);
      this.inFlight = act;
      return [`act: ${describeAct(act)}`];
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      return [`refused: ${error.code}: ${error.message}`];
    }
  }

  private printMemory(id: NodeId): string[] {
    const memory = this.memories.get(id);
    if (memory === undefined) fail(`no member ${n(id)}`);
    const s = memory.snapshot();
    const transfer = Number.isFinite(s.lastTransferMs) ? String(s.lastTransferMs) : 'never';
    return [
      `memory ${n(id)}: detector=${s.detectorTerm === null ? '-' : `term ${s.detectorTerm}`} ` +
        `refreshed=${describeMs(s.refreshedMs)} refreshing=${describeMs(s.refreshing)} ` +
        `to-record=${describeMs(s.refreshesToRecord, wall)} last-transfer=${transfer}`,
    ];
  }

  private printRegistry(): string[] {
    const lines = this.registry.all().map((m) => {
      const role = m.role === 'standby' ? `standby/${m.standbyMode}` : m.role;
      const extra = [
        m.standbyMode === 'warm' ? `every=${m.snapshotEveryMs}ms` : '',
        m.promotedAtMs === null ? '' : `promoted@${m.promotedAtMs}`,
        m.demotedAtMs === null ? '' : `demoted@${m.demotedAtMs}`,
        m.lastRefreshAtMs === null ? '' : `refreshed@${wall(m.lastRefreshAtMs)}`,
        m.health === 'healthy' ? '' : `recorded=${m.health}@${m.healthSinceMs}`,
      ].filter((x) => x !== '');
      return `${n(m.id)} ${role} ${m.placement} zone=${m.zone}${extra.map((x) => ` ${x}`).join('')}`;
    });
    const c = this.config();
    return [...lines, `config: voters=${ids(c.voters)} learners=${ids(c.learners)}`];
  }
}
