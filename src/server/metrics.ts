/**
 * Prometheus metrics of one member (GET /metrics on the admin port, served by src/cli/node.ts).
 *
 * Observability is injected (STYLE.md practice 15): each member owns a `MemberMetrics` with its
 * own prom-client Registry — never the global default one, since tests run several members in
 * one process. Values are read at scrape time from the member's live state (a `MetricsView`,
 * taken once per scrape so that every gauge of a scrape describes the same instant); events
 * that a scrape cannot reconstruct (leader changes, policy actions, fdatasync durations) are
 * counted as they happen. No timers of its own.
 *
 * The names are an interface (the dashboard builds on them): `tandem_*`, units in the name,
 * label values bounded (member names come from the registry, at most MEMBERS_MAX; policy action
 * kinds at most POLICY_ACTION_KINDS_MAX). Do not rename without a reason.
 */
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';
import type { Role, StandbyMode } from '../cluster/commands.js';
import { MEMBERS_MAX } from '../cluster/registry.js';
import { NONE } from '../raft/types.js';
import type { FileHandle, FileSystem, OpenMode } from '../storage/fs.js';
import { assert } from '../util/assert.js';
import { MemberEvents } from './events.js';
import type { EtcdFacade } from './facade.js';
import type { PolicyEvent } from './redundancy.js';
import type { RoleTruth } from './role.js';
import type { TandemMember, TandemStateMachine } from './tandem-state-machine.js';

/** Every metric name starts with this (process metrics too). */
export const METRIC_PREFIX = 'tandem_';
/** Distinct `kind` label values of the policy counter; later kinds count as "other". */
export const POLICY_ACTION_KINDS_MAX = 32;
/** A policy action name longer than this, or not kebab-case, counts as "other". */
const POLICY_ACTION_KIND_CHARS_MAX = 40;
/** etcd's wal_fsync_duration_seconds buckets: 1 ms doubling to about 8 s. */
export const FSYNC_BUCKETS_SECONDS: readonly number[] = Array.from(
  { length: 14 },
  (_, i) => 0.001 * 2 ** i,
);
/** The role gauge's series: one per role and standby mode, 1 for the current one. */
const ROLE_SERIES: readonly { role: Role | 'unknown'; standbyMode: StandbyMode | '' }[] = [
  { role: 'voter', standbyMode: '' },
  { role: 'replica', standbyMode: '' },
  { role: 'standby', standbyMode: 'hot' },
  { role: 'standby', standbyMode: 'warm' },
  { role: 'standby', standbyMode: 'cold' },
  { role: 'unknown', standbyMode: '' },
];

/** The member's live state as one scrape sees it (built by `liveMetricsView` in production). */
export interface MetricsView {
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly isLeader: boolean;
  readonly hasLeader: boolean;
  /** This member's role as it knows it (RoleTruth.selfRole); 'unknown' until confirmed. */
  readonly role: Role | 'unknown';
  readonly standbyMode: StandbyMode;
  /** The registry's zone of this member (the configured one until published). */
  readonly zone: string;
  /**
   * Replication lag in entries by member name, as this member knows it: on the leader every
   * member in the Raft configuration (commit index minus its match index); elsewhere only this
   * member (the commit index it knows minus its applied index).
   */
  readonly lagEntries: ReadonlyMap<string, number>;
  /** See `standbyStalenessSeconds`; null unless this member is a warm or cold standby. */
  readonly standbyStalenessSeconds: number | null;
  readonly reads: { readonly local: number; readonly barrier: number };
}

export interface MemberMetricsOptions {
  readonly name: string;
  /** The member id in hex, as /status and etcdctl show it. */
  readonly memberIdHex: string;
  /** A monotonic clock in ms for durations (performance.now in production). */
  readonly monotonicMs: () => number;
  /** prom-client's process and Node.js metrics, prefixed (default true; off in unit tests). */
  readonly processMetrics?: boolean;
}

export class MemberMetrics {
  readonly registry = new Registry();
  private view: (() => MetricsView) | null = null;
  /** The view of the scrape in progress (taken once per scrape, see `scrape`). */
  private current: MetricsView | null = null;
  private lastLeader: number = NONE;
  private readonly policyKinds = new Set<string>();
  private readonly leaderChanges: Counter;
  private readonly replacements: Counter;
  private readonly policyActions: Counter<'kind' | 'outcome'>;
  private readonly fsyncSeconds: Histogram;

  constructor(private readonly options: MemberMetricsOptions) {
    const registers = [this.registry];
    const gauge = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      collect: (g: Gauge<L>, v: MetricsView) => void,
    ): void => {
      const metrics = this;
      new Gauge<L>({
        name: METRIC_PREFIX + name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          const v = metrics.snapshot();
          if (v !== null) collect(this, v);
        },
      });
    };
    gauge('member_info', 'Always 1; labels name this member.', ['name', 'zone', 'id'], (g, v) =>
      g.set({ name: options.name, zone: v.zone, id: options.memberIdHex }, 1),
    );
    gauge(
      'member_role',
      "This member's role as it knows it: 1 for the current role and standby mode, 0 otherwise.",
      ['role', 'standby_mode'],
      (g, v) => {
        const mode = v.role === 'standby' ? v.standbyMode : '';
        for (const s of ROLE_SERIES) {
          const on = s.role === v.role && s.standbyMode === mode;
          g.set({ role: s.role, standby_mode: s.standbyMode }, on ? 1 : 0);
        }
      },
    );
    gauge('raft_term', 'The Raft term this member is in.', [], (g, v) => g.set(v.term));
    gauge('raft_commit_index', 'The highest log index this member knows committed.', [], (g, v) =>
      g.set(v.commitIndex),
    );
    gauge('raft_applied_index', 'The highest log index applied to the state.', [], (g, v) =>
      g.set(v.appliedIndex),
    );
    gauge('raft_is_leader', '1 when this member is the Raft leader.', [], (g, v) =>
      g.set(v.isLeader ? 1 : 0),
    );
    gauge('raft_has_leader', '1 when this member knows a leader.', [], (g, v) =>
      g.set(v.hasLeader ? 1 : 0),
    );
    gauge(
      'replication_lag_entries',
      'Entries behind the commit index, as this member knows it: every member of the Raft ' +
        'configuration on the leader (commit minus match), this member alone elsewhere.',
      ['member'],
      (g, v) => {
        assert(v.lagEntries.size <= MEMBERS_MAX, 'lag labels bounded by the registry');
        for (const [member, entries] of v.lagEntries) g.set({ member }, entries);
      },
    );
    // Labelled so that it is absent, not 0 (fresh), on any other member: prom-client reports
    // an unlabelled gauge as 0 after a reset.
    gauge(
      'standby_staleness_seconds',
      'On a warm or cold standby: seconds since it last applied an entry or installed a ' +
        'snapshot (since start if it has not); writes committed since may be missing from it.',
      ['standby_mode'],
      (g, v) => {
        if (v.standbyStalenessSeconds === null) return;
        g.set({ standby_mode: v.standbyMode }, v.standbyStalenessSeconds);
      },
    );
    const reads = this;
    new Counter<'path'>({
      name: `${METRIC_PREFIX}reads_total`,
      help: 'Reads served from local state at once (local) or after a read barrier (barrier).',
      labelNames: ['path'],
      registers,
      collect() {
        this.reset();
        const v = reads.snapshot();
        if (v === null) return;
        this.inc({ path: 'local' }, v.reads.local);
        this.inc({ path: 'barrier' }, v.reads.barrier);
      },
    });
    this.leaderChanges = new Counter({
      name: `${METRIC_PREFIX}raft_leader_changes_total`,
      help: 'Leader changes this member saw (a new leader known; as etcd counts them).',
      registers,
    });
    this.replacements = new Counter({
      name: `${METRIC_PREFIX}redundancy_replacements_total`,
      help: 'Failed voters this member, as leader, replaced by a standby (applied).',
      registers,
    });
    this.policyActions = new Counter({
      name: `${METRIC_PREFIX}redundancy_policy_actions_total`,
      help: 'Redundancy policy actions this member, as leader, completed (ok) or saw fail.',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    this.fsyncSeconds = new Histogram({
      name: `${METRIC_PREFIX}wal_fsync_seconds`,
      help: 'Duration of each fdatasync of the WAL and snapshot files (every copy).',
      buckets: [...FSYNC_BUCKETS_SECONDS],
      registers,
    });
    if (options.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    }
  }

  /** Connects the live member once it exists; until then only the counters are reported. */
  attach(view: () => MetricsView): void {
    assert(this.view === null, 'metrics attached once');
    this.view = view;
  }

  /** The Prometheus text exposition of every metric, its view taken now. */
  async scrape(): Promise<string> {
    this.current = this.view?.() ?? null;
    return this.registry.metrics();
  }

  /** The same as JSON (tests, the dashboard), its view taken now. */
  async scrapeJson(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    this.current = this.view?.() ?? null;
    return this.registry.getMetricsAsJSON();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The member loop's soft-state hook: counts a new leader as etcd does (none is no leader). */
  noteLeader(lead: number): void {
    if (lead !== NONE && lead !== this.lastLeader) this.leaderChanges.inc();
    this.lastLeader = lead;
  }

  /** The redundancy driver's events (MemberIo.onPolicyEvent). */
  notePolicyEvent(event: PolicyEvent): void {
    const outcome = event.error === undefined ? 'ok' : 'error';
    this.policyActions.inc({ kind: this.policyKind(event.action), outcome });
    if (event.action === 'replace' && outcome === 'ok') this.replacements.inc();
  }

  /** `fs` with every handle's datasync timed into tandem_wal_fsync_seconds. */
  timedFileSystem(fs: FileSystem): FileSystem {
    return new DatasyncTimingFileSystem(fs, this.options.monotonicMs, (seconds) =>
      this.fsyncSeconds.observe(seconds),
    );
  }

  private snapshot(): MetricsView | null {
    return this.current;
  }

  /** A bounded label value: known kebab-case names, at most POLICY_ACTION_KINDS_MAX of them. */
  private policyKind(action: string): string {
    if (this.policyKinds.has(action)) return action;
    const wellFormed =
      action.length <= POLICY_ACTION_KIND_CHARS_MAX && /^[a-z][a-z0-9-]*$/.test(action);
    if (!wellFormed || this.policyKinds.size >= POLICY_ACTION_KINDS_MAX) return 'other';
    this.policyKinds.add(action);
    return action;
  }
}

/** The live sources of a member's MetricsView (an assembled member's parts, assemble.ts). */
export interface LiveMember {
  readonly member: TandemMember;
  readonly facade: EtcdFacade;
  readonly role: RoleTruth;
  readonly state: TandemStateMachine;
  readonly applies: ApplyTracker;
  /** The configured zone, until the registry has this member's. */
  readonly zone: string;
}

/** This member's MetricsView now. */
export function liveMetricsView(live: LiveMember): MetricsView {
  const { member, facade, state } = live;
  const self = live.role.selfRole();
  const registry = state.allMembers();
  assert(registry.length <= MEMBERS_MAX, 'registry size');
  const label = (id: number): string => registry.find((m) => m.id === id)?.name || id.toString(16);
  const lagEntries = new Map<string, number>();
  if (member.isLeader) {
    // Raft progress exists for every member of the configuration (the leader's own included).
    for (const [id, progress] of member.status().progress) {
      lagEntries.set(label(id), Math.max(0, member.commitIndex - progress.match));
    }
  } else {
    lagEntries.set(label(member.id), Math.max(0, member.commitIndex - member.appliedIndex));
  }
  return {
    term: member.term,
    commitIndex: member.commitIndex,
    appliedIndex: member.appliedIndex,
    isLeader: member.isLeader,
    hasLeader: member.leader !== NONE,
    role: self.role,
    standbyMode: self.standbyMode,
    zone: state.member(member.id)?.zone || live.zone,
    lagEntries,
    standbyStalenessSeconds: standbyStalenessSeconds(self.role, self.standbyMode, live.applies),
    reads: facade.readCounters(),
  };
}

/** The staleness of a warm or cold standby (see ApplyTracker); null for any other role. */
export function standbyStalenessSeconds(
  role: Role | 'unknown',
  mode: StandbyMode,
  applies: ApplyTracker,
): number | null {
  return role === 'standby' && mode !== 'hot' ? applies.stalenessSeconds() : null;
}

/**
 * When this member's state last advanced: an entry applied or a snapshot installed. A warm
 * standby is refreshed by being staged as a learner until caught up (RedundancyDriver), so its
 * last apply is when it last held (about) the leader's state; a standby outside the
 * configuration applies nothing, so the time since is an honest staleness: writes committed
 * since may be missing. "Since it last heard from a leader" would not be: the leader probes
 * standbys outside the configuration every heartbeat, with no data.
 */
export class ApplyTracker {
  private lastAdvanceMs: number | null = null;

  constructor(
    private readonly nowMs: () => number,
    private readonly startedMs: number = nowMs(),
  ) {}

  note(): void {
    this.lastAdvanceMs = this.nowMs();
  }

  /** Seconds since the state last advanced, or since start when it has not in this process. */
  stalenessSeconds(): number {
    const since = this.lastAdvanceMs ?? this.startedMs;
    return Math.max(0, this.nowMs() - since) / 1000;
  }

  /** Notes every entry the member applies and every snapshot it installs. */
  attach(events: MemberEvents): void {
    MemberEvents.add(events.applied, () => this.note());
    MemberEvents.add(events.snapshotInstalled, () => this.note());
  }
}

/** A FileSystem whose handles time each datasync; everything else passes through. */
class DatasyncTimingFileSystem implements FileSystem {
  constructor(
    private readonly inner: FileSystem,
    private readonly monotonicMs: () => number,
    private readonly observe: (seconds: number) => void,
  ) {}

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    return new DatasyncTimingHandle(
      await this.inner.open(path, mode),
      this.monotonicMs,
      this.observe,
    );
  }

  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }

  unlink(path: string): Promise<void> {
    return this.inner.unlink(path);
  }

  readdir(dir: string): Promise<string[]> {
    return this.inner.readdir(dir);
  }

  mkdir(dir: string): Promise<void> {
    return this.inner.mkdir(dir);
  }

  syncDir(dir: string): Promise<void> {
    return this.inner.syncDir(dir);
  }

  stat(path: string) {
    return this.inner.stat(path);
  }
}

class DatasyncTimingHandle implements FileHandle {
  constructor(
    private readonly inner: FileHandle,
    private readonly monotonicMs: () => number,
    private readonly observe: (seconds: number) => void,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  /** Only a successful flush is a duration; a failed one stops the member (onFatal). */
  async datasync(): Promise<void> {
    const startMs = this.monotonicMs();
    await this.inner.datasync();
    this.observe(Math.max(0, this.monotonicMs() - startMs) / 1000);
  }

  write(data: Uint8Array, position: number): Promise<void> {
    return this.inner.write(data, position);
  }

  read(into: Uint8Array, position: number): Promise<number> {
    return this.inner.read(into, position);
  }

  sync(): Promise<void> {
    return this.inner.sync();
  }

  truncate(sizeBytes: number): Promise<void> {
    return this.inner.truncate(sizeBytes);
  }

  allocate(sizeBytes: number): Promise<void> {
    return this.inner.allocate(sizeBytes);
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
