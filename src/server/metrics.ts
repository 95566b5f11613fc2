/**
 * Prometheus metrics of one member (GET /metrics on the admin port, served by src/cli/node.ts).
 *
 * Observability is injected (STYLE.md practice 15): each member owns a `MemberMetrics` with its
 * own prom-client Registry — never the global default one, since tests run several members in
 * one process. Values are read at scrape time from the member's live state (a `MetricsView`,
 * taken once per scrape so that every gauge of a scrape describes the same instant); events
 * that a scrape cannot reconstruct (leader changes, policy actions, fdatasync durations, apply
 * durations, peer round trips) are counted as they happen. No timers of its own: the event-loop
 * delay series are fed by perf_hooks.monitorEventLoopDelay's own libuv timer, read and reset at
 * each scrape.
 *
 * Hot paths (each applied command) observe into `BucketCounts`: a typed array, nothing
 * allocated; prom-client's own histograms hash a label object on every observation.
 *
 * The names are an interface (the dashboard builds on them): `tandem_*`, units in the name,
 * label values bounded (member names come from the registry, at most MEMBERS_MAX; policy action
 * kinds at most POLICY_ACTION_KINDS_MAX). Do not rename without a reason.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type Metric,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';
import type { Role, StandbyMode } from '../cluster/commands.js';
import { MEMBERS_MAX } from '../cluster/registry.js';
import { NONE, type NodeId } from '../raft/types.js';
import type { FileHandle, FileSystem, OpenMode, OpenOptions } from '../storage/fs.js';
import { assert } from '../util/assert.js';
import { MemberEvents } from './events.js';
import type { EtcdFacade } from './facade.js';
import type { ApplyTimer } from './member.js';
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
/** etcd's etcd_server_apply_duration_seconds buckets: 100 µs doubling to about 52 s. */
export const APPLY_BUCKETS_SECONDS: readonly number[] = Array.from(
  { length: 20 },
  (_, i) => 0.0001 * 2 ** i,
);
/** etcd's etcd_network_peer_round_trip_time_seconds buckets: 100 µs doubling to about 0.8 s. */
export const PEER_RTT_BUCKETS_SECONDS: readonly number[] = Array.from(
  { length: 14 },
  (_, i) => 0.0001 * 2 ** i,
);
/** Prometheus's default buckets, as go-grpc-prometheus uses them. */
const GRPC_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
type GrpcLabel = 'grpc_type' | 'grpc_service' | 'grpc_method';
const GRPC_TYPES: Readonly<Record<string, string>> = {
  unary: 'unary',
  serverStream: 'server_stream',
  bidi: 'bidi_stream',
};
/** grpc-go's names of the status codes, by number. */
const GRPC_CODE_NAMES: readonly string[] = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
];

/**
 * monitorEventLoopDelay's timer period. Node's and prom-client's default: about 100 samples a
 * second, 0.6 % of a core on an idle member (1 ms would cost 2.5 %, measured on the bench VM,
 * and would show in the benchmarks' CPU per request).
 */
export const EVENT_LOOP_RESOLUTION_MS = 10;
/** Event-loop delay buckets: 0.5 ms to 5 s, fine enough to tell 1, 5, 10 and 50 ms apart. */
export const EVENT_LOOP_DELAY_BUCKETS_SECONDS: readonly number[] = [
  0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5,
  1, 2, 5,
];
/**
 * Samples moved into the histogram by one scrape (about 17 minutes of them; some 30 ms of
 * observe calls). A scrape after a longer silence moves a proportional subsample: the shape of
 * the distribution is kept, its count is not.
 */
export const EVENT_LOOP_SAMPLES_PER_SCRAPE_MAX = 100_000;
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
  /** Proposals made on this member still waiting for their outcome. */
  readonly pendingProposals: number;
  /** The KV store's size on disk; null where there is none (memory backends). */
  readonly dbSizeBytes: number | null;
  /** Open watch streams and their watchers (synced, catching up, or parked as victims). */
  readonly watchStreams: number;
  readonly watchers: number;
  /** Leases this member's state holds. */
  readonly leases: number;
  /** Proposals made here that failed (Member.proposalsFailed). */
  readonly proposalsFailed: number;
  /** Bytes of the KV store's pages holding data (the rest of the file is free); null: unknown. */
  readonly dbSizeInUseBytes: number | null;
  /** Peer traffic by peer member id (hex): bytes sent to it and received from it. */
  readonly peerTraffic: ReadonlyMap<string, PeerTrafficView>;
  /** Request ids the dedupe table remembers, and duplicates it answered here (dedupe.ts). */
  readonly requestIds: number;
  readonly requestIdDuplicates: number;
}

export interface PeerTrafficView {
  readonly sentBytes: number;
  readonly receivedBytes: number;
}

/**
 * Where event-loop delay samples come from: perf_hooks' IntervalHistogram in production
 * (`monitorEventLoop`), a fake in tests. Values in nanoseconds, since the last `reset`. Each
 * scrape reads the window and resets it; IntervalHistogram.reset() also forgets the last tick,
 * so the one sample spanning a reset is lost (1 in 1,500 at a 15 s scrape interval): the price
 * of exact percentiles per window.
 */
export interface EventLoopDelaySource {
  /**
   * The sampling timer's period: each sample is the time between two of its ticks, so a loop
   * that is never late gives samples of this, and the delay is a sample minus this.
   */
  readonly resolutionNs: number;
  /** Samples so far. */
  readonly count: number;
  readonly min: number;
  readonly max: number;
  /** The sample at this percentile (0 < percent <= 100), rounded as an HDR histogram does. */
  percentile(percent: number): number;
  /** Forgets every sample: a new window starts. */
  reset(): void;
}

/** This process's event loop, sampled every `resolutionMs` by a libuv timer (enabled now). */
export function monitorEventLoop(resolutionMs = EVENT_LOOP_RESOLUTION_MS): EventLoopDelaySource {
  assert(Number.isInteger(resolutionMs) && resolutionMs >= 1, 'resolution in whole ms');
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  return {
    resolutionNs: resolutionMs * 1e6,
    get count() {
      return histogram.count;
    },
    get min() {
      return histogram.min;
    },
    get max() {
      return histogram.max;
    },
    percentile: (percent) => histogram.percentile(percent),
    reset: () => histogram.reset(),
  };
}

/** One bucket's share of the samples: how many, and the delay of its median sample. */
export interface DelayBucket {
  readonly count: number;
  readonly medianDelaySeconds: number;
}

/**
 * The source's samples split by delay (sample minus resolution, at least 0) into the buckets
 * `boundsSeconds` (ascending upper bounds) and a last +Inf one. IntervalHistogram exposes no
 * buckets, only percentiles, so the rank of the last sample within each bound is found by a
 * binary search over ranks: O(buckets × log(count)) percentile calls (about 2 µs each), not
 * one per sample.
 */
export function delayBuckets(
  source: EventLoopDelaySource,
  boundsSeconds: readonly number[],
): DelayBucket[] {
  const total = source.count;
  assert(Number.isInteger(total) && total >= 0, 'a sample count');
  const buckets: DelayBucket[] = [];
  if (total === 0) return buckets;
  const sampleAt = (rank: number): number => source.percentile((100 * rank) / total);
  /** The highest rank whose sample is <= `limitNs`, searching ranks from `fromRank` up. */
  const rankAtMost = (limitNs: number, fromRank: number): number => {
    if (source.max <= limitNs) return total;
    if (source.min > limitNs) return fromRank;
    let low = fromRank; // its sample is <= limitNs (rank 0: no sample)
    let high = total; // its sample is > limitNs
    while (high - low > 1) {
      const mid = Math.floor((low + high) / 2);
      if (sampleAt(mid) <= limitNs) low = mid;
      else high = mid;
    }
    return low;
  };
  let below = 0;
  for (let i = 0; i <= boundsSeconds.length; i++) {
    const bound = boundsSeconds[i] ?? Number.POSITIVE_INFINITY;
    assert(i === 0 || bound > boundsSeconds[i - 1]!, 'bounds ascending');
    const upTo =
      bound === Number.POSITIVE_INFINITY
        ? total
        : rankAtMost(bound * 1e9 + source.resolutionNs, below);
    assert(upTo >= below && upTo <= total, 'cumulative counts never fall');
    const count = upTo - below;
    const median = below + Math.ceil(count / 2);
    const delaySeconds = count === 0 ? 0 : (sampleAt(median) - source.resolutionNs) / 1e9;
    buckets.push({ count, medianDelaySeconds: Math.min(bound, Math.max(0, delaySeconds)) });
    below = upTo;
  }
  return buckets;
}

export interface MemberMetricsOptions {
  readonly name: string;
  /** The member id in hex, as /status and etcdctl show it. */
  readonly memberIdHex: string;
  /** A monotonic clock in ms for durations (performance.now in production). */
  readonly monotonicMs: () => number;
  /** prom-client's process and Node.js metrics, prefixed (default true; off in unit tests). */
  readonly processMetrics?: boolean;
  /**
   * Feeds tandem_event_loop_delay_seconds and its window gauges (default: `monitorEventLoop()`,
   * this process's loop); null: no such metrics.
   */
  readonly eventLoopDelay?: EventLoopDelaySource | null;
}

export class MemberMetrics {
  readonly registry = new Registry();
  private view: (() => MetricsView) | null = null;
  /** The view of the scrape in progress (taken once per scrape, see `scrape`). */
  private current: MetricsView | null = null;
  private lastLeader: number = NONE;
  private readonly policyKinds = new Set<string>();
  private readonly leaderChanges: Counter;
  private readonly etcdLeaderChanges: Counter;
  private readonly replacements: Counter;
  private readonly policyActions: Counter<'kind' | 'outcome'>;
  private readonly fsyncSeconds: Histogram;
  /** The same observations under etcd's name (etcd_disk_wal_fsync_duration_seconds). */
  private readonly etcdFsyncSeconds: Histogram;
  private readonly applySeconds: BucketCounts;
  private readonly peerRoundTrip: BucketHistogram;
  /** The event-loop window of the scrape in progress (taken once per scrape, see `scrape`). */
  private loopWindows: EventLoopWindows | null = null;
  private readonly grpcHandled: Counter<GrpcLabel | 'grpc_code'>;
  private readonly grpcSeconds: Histogram<GrpcLabel>;
  /** Per method path (bounded: the methods the server routes), its label children. */
  private readonly grpcMethods = new Map<
    string,
    {
      readonly labels: Record<GrpcLabel, string>;
      readonly seconds: { observe(value: number): void };
      readonly handled: Map<number, { inc(): void }>;
    }
  >();

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
    // etcd's own names for what an etcd dashboard charts first (same values as tandem_* ones).
    const etcdGauge = (name: string, help: string, value: (v: MetricsView) => number | null) => {
      const metrics = this;
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.reset();
          const v = metrics.snapshot();
          const x = v === null ? null : value(v);
          if (x !== null) this.set(x);
        },
      });
    };
    etcdGauge('etcd_server_has_leader', '1 when a leader is known (as etcd).', (v) =>
      v.hasLeader ? 1 : 0,
    );
    etcdGauge('etcd_server_is_leader', '1 when this member leads (as etcd).', (v) =>
      v.isLeader ? 1 : 0,
    );
    etcdGauge(
      'etcd_server_proposals_committed_total',
      'The commit index: proposals committed (a gauge, as etcd has it).',
      (v) => v.commitIndex,
    );
    etcdGauge(
      'etcd_server_proposals_applied_total',
      'The applied index: proposals applied (a gauge, as etcd has it).',
      (v) => v.appliedIndex,
    );
    etcdGauge(
      'etcd_server_proposals_pending',
      'Proposals made here and not yet applied or failed.',
      (v) => v.pendingProposals,
    );
    etcdGauge(
      'etcd_debugging_mvcc_watch_stream_total',
      'Open watch streams on this member (a gauge, as etcd has it).',
      (v) => v.watchStreams,
    );
    etcdGauge(
      'etcd_debugging_mvcc_watcher_total',
      'Watchers on this member (a gauge, as etcd has it).',
      (v) => v.watchers,
    );
    etcdGauge(
      'etcd_mvcc_db_total_size_in_bytes',
      "The KV store's file size (LMDB data.mdb), as etcd reports its bbolt file.",
      (v) => v.dbSizeBytes,
    );
    etcdGauge(
      'etcd_mvcc_db_total_size_in_use_in_bytes',
      "The KV store's pages holding data (LMDB: meta, tree and overflow pages); the rest of " +
        'the file is free pages a defragment gives back.',
      (v) => v.dbSizeInUseBytes,
    );
    gauge('leases', "Leases in this member's state.", [], (g, v) => g.set(v.leases));
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
    const scraped = this;
    new Counter({
      name: 'etcd_server_proposals_failed_total',
      help:
        'Proposals made here that failed: refused by raft, timed out, or a membership change ' +
        'refused at apply (as etcd: not those failed by a stop or refused before proposing).',
      registers,
      collect() {
        this.reset();
        const v = scraped.snapshot();
        if (v !== null) this.inc(v.proposalsFailed);
      },
    });
    new Counter({
      name: `${METRIC_PREFIX}request_id_duplicates_total`,
      help:
        'Writes carrying a tandem-request-id already applied, answered here with the first ' +
        "application's result instead of being applied again (retries after a lost answer).",
      registers,
      collect() {
        this.reset();
        const v = scraped.snapshot();
        if (v !== null) this.inc(v.requestIdDuplicates);
      },
    });
    gauge('request_ids', 'Request ids the replicated dedupe table remembers.', [], (g, v) =>
      g.set(v.requestIds),
    );
    // etcd's names and labels: To and From are member ids in hex.
    new Counter<'To'>({
      name: 'etcd_network_peer_sent_bytes_total',
      help: 'Bytes of Raft traffic sent to each peer (frames after the handshake).',
      labelNames: ['To'],
      registers,
      collect() {
        this.reset();
        const v = scraped.snapshot();
        if (v === null) return;
        for (const [to, t] of v.peerTraffic) this.inc({ To: to }, t.sentBytes);
      },
    });
    new Counter<'From'>({
      name: 'etcd_network_peer_received_bytes_total',
      help: 'Bytes of Raft traffic received from each peer (after the handshake).',
      labelNames: ['From'],
      registers,
      collect() {
        this.reset();
        const v = scraped.snapshot();
        if (v === null) return;
        for (const [from, t] of v.peerTraffic) this.inc({ From: from }, t.receivedBytes);
      },
    });
    this.peerRoundTrip = registerBucketHistogram(
      this.registry,
      new BucketHistogram(
        'etcd_network_peer_round_trip_time_seconds',
        'Round trip of a PING answered on the peer connection in use, every second, to each peer.',
        PEER_RTT_BUCKETS_SECONDS,
        'To',
        MEMBERS_MAX,
      ),
    );
    const apply = registerBucketHistogram(
      this.registry,
      new BucketHistogram(
        'etcd_server_apply_duration_seconds',
        "How long applying each command to this member's state took (not no-ops or " +
          'membership changes; the batch commit after them is not included).',
        APPLY_BUCKETS_SECONDS,
        null,
        1,
      ),
    );
    const applyCounts = apply.child('');
    assert(applyCounts !== null, 'the one unlabelled series');
    this.applySeconds = applyCounts;
    this.leaderChanges = new Counter({
      name: `${METRIC_PREFIX}raft_leader_changes_total`,
      help: 'Leader changes this member saw (a new leader known; as etcd counts them).',
      registers,
    });
    this.etcdLeaderChanges = new Counter({
      name: 'etcd_server_leader_changes_seen_total',
      help: 'Leader changes this member saw (as etcd).',
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
    // etcd's (go-grpc-prometheus) names and labels, so an etcd Grafana board reads them.
    this.grpcHandled = new Counter({
      name: 'grpc_server_handled_total',
      help: 'gRPC calls completed on the client port, by method and status code.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
      registers,
    });
    this.grpcSeconds = new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'How long gRPC calls on the client port ran until their status (streams: their life).',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
      buckets: [...GRPC_BUCKETS_SECONDS],
      registers,
    });
    this.fsyncSeconds = new Histogram({
      name: `${METRIC_PREFIX}wal_fsync_seconds`,
      help: 'Duration of each fdatasync of the WAL and snapshot files (every copy).',
      buckets: [...FSYNC_BUCKETS_SECONDS],
      registers,
    });
    this.etcdFsyncSeconds = new Histogram({
      name: 'etcd_disk_wal_fsync_duration_seconds',
      help: "The same as tandem_wal_fsync_seconds, under etcd's name.",
      buckets: [...FSYNC_BUCKETS_SECONDS],
      registers,
    });
    const loop = options.eventLoopDelay === undefined ? monitorEventLoop() : options.eventLoopDelay;
    if (loop !== null) this.registerEventLoop(new EventLoopWindows(loop), registers);
    if (options.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    }
  }

  /**
   * The event-loop delay of each scrape window: a histogram (the window's samples moved in)
   * and its p50, p99 and max as gauges (exact, from the window's HDR histogram).
   */
  private registerEventLoop(windows: EventLoopWindows, registers: Registry[]): void {
    this.loopWindows = windows;
    const resolutionMs = windows.source.resolutionNs / 1e6;
    new Histogram({
      name: `${METRIC_PREFIX}event_loop_delay_seconds`,
      help:
        "How late this member's event loop ran a timer due every " +
        `${resolutionMs} ms (perf_hooks.monitorEventLoopDelay), moved in at each ` +
        "scrape; _sum is approximate (each sample counts as its bucket's median).",
      buckets: [...EVENT_LOOP_DELAY_BUCKETS_SECONDS],
      registers,
      collect() {
        windows.moveInto((seconds) => this.observe(seconds));
      },
    });
    const windowGauge = (name: string, help: string, pick: (w: LoopWindowStats) => number) => {
      new Gauge({
        name: `${METRIC_PREFIX}event_loop_delay_${name}_seconds`,
        help: `${help} of this member's event loop since the previous scrape (a timer due every ${resolutionMs} ms, minus that).`,
        registers,
        collect() {
          const stats = windows.stats;
          if (stats !== null) this.set(pick(stats));
        },
      });
    };
    windowGauge('p50', 'The median delay', (w) => w.p50Seconds);
    windowGauge('p99', 'The 99th percentile delay', (w) => w.p99Seconds);
    windowGauge('max', 'The largest delay', (w) => w.maxSeconds);
  }

  /** Connects the live member once it exists; until then only the counters are reported. */
  attach(view: () => MetricsView): void {
    assert(this.view === null, 'metrics attached once');
    this.view = view;
  }

  /** The Prometheus text exposition of every metric, its view taken now. */
  async scrape(): Promise<string> {
    this.current = this.view?.() ?? null;
    this.loopWindows?.take();
    return this.registry.metrics();
  }

  /** The same as JSON (tests, the dashboard), its view taken now. */
  async scrapeJson(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    this.current = this.view?.() ?? null;
    this.loopWindows?.take();
    return this.registry.getMetricsAsJSON();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The member loop's soft-state hook: counts a new leader as etcd does (none is no leader). */
  noteLeader(lead: number): void {
    if (lead !== NONE && lead !== this.lastLeader) {
      this.leaderChanges.inc();
      this.etcdLeaderChanges.inc();
    }
    this.lastLeader = lead;
  }

  /**
   * A gRPC call ended (api/server.ts onCallEnd). Labels come only from methods the server
   * routes (bounded: etcd's services), kinds and the 17 status codes.
   */
  noteGrpcCall(path: string, kind: string, code: number, seconds: number): void {
    // The label children are kept per method and code: prom-client hashes a label object on
    // every inc/observe otherwise, a measurable part of a put's CPU.
    let m = this.grpcMethods.get(path);
    if (m === undefined) {
      const slash = path.lastIndexOf('/');
      const labels = {
        grpc_type: GRPC_TYPES[kind] ?? kind,
        grpc_service: path.slice(1, slash),
        grpc_method: path.slice(slash + 1),
      };
      m = { labels, seconds: this.grpcSeconds.labels(labels), handled: new Map() };
      this.grpcMethods.set(path, m);
    }
    let handled = m.handled.get(code);
    if (handled === undefined) {
      handled = this.grpcHandled.labels({
        ...m.labels,
        grpc_code: GRPC_CODE_NAMES[code] ?? String(code),
      });
      m.handled.set(code, handled);
    }
    handled.inc();
    m.seconds.observe(seconds);
  }

  /** The transport timed a round trip to `peer` (TcpTransport's onRoundTrip). */
  notePeerRoundTrip(peer: NodeId, seconds: number): void {
    this.peerRoundTrip.child(peer.toString(16))?.observe(seconds);
  }

  /** Times each applied command into etcd_server_apply_duration_seconds (MemberIo.applyTimer). */
  applyTimer(): ApplyTimer {
    const counts = this.applySeconds;
    return { nowMs: () => performance.now(), observeSeconds: (s) => counts.observe(s) };
  }

  /** The redundancy driver's events (MemberIo.onPolicyEvent). */
  notePolicyEvent(event: PolicyEvent): void {
    const outcome = event.error === undefined ? 'ok' : 'error';
    this.policyActions.inc({ kind: this.policyKind(event.action), outcome });
    if (event.action === 'replace' && outcome === 'ok') this.replacements.inc();
  }

  /** `fs` with every handle's datasync timed into tandem_wal_fsync_seconds. */
  timedFileSystem(fs: FileSystem): FileSystem {
    return new DatasyncTimingFileSystem(fs, this.options.monotonicMs, (seconds) => {
      this.fsyncSeconds.observe(seconds);
      this.etcdFsyncSeconds.observe(seconds);
    });
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

/** One scrape window's event-loop delay percentiles (seconds, sample minus resolution). */
export interface LoopWindowStats {
  readonly p50Seconds: number;
  readonly p99Seconds: number;
  readonly maxSeconds: number;
}

/**
 * Scrape windows over an event-loop delay source: `take` (once per scrape) splits the samples
 * since the previous take into buckets, reads their percentiles and resets the source;
 * `moveInto` observes the window's buckets (at most EVENT_LOOP_SAMPLES_PER_SCRAPE_MAX
 * observations, each its bucket's median). A window without samples (two scrapes within one
 * resolution) moves nothing and keeps the previous percentiles.
 */
export class EventLoopWindows {
  /** The last window with samples; null before the first. */
  stats: LoopWindowStats | null = null;
  private buckets: DelayBucket[] = [];

  constructor(readonly source: EventLoopDelaySource) {}

  take(): void {
    const source = this.source;
    this.buckets = delayBuckets(source, EVENT_LOOP_DELAY_BUCKETS_SECONDS);
    if (this.buckets.length === 0) return;
    assert(this.buckets.length === EVENT_LOOP_DELAY_BUCKETS_SECONDS.length + 1, 'every bucket');
    const delay = (sampleNs: number) => Math.max(0, sampleNs - source.resolutionNs) / 1e9;
    this.stats = {
      p50Seconds: delay(source.percentile(50)),
      p99Seconds: delay(source.percentile(99)),
      maxSeconds: delay(source.max),
    };
    assert(this.stats.p50Seconds <= this.stats.p99Seconds, 'percentiles ordered');
    source.reset();
  }

  moveInto(observe: (seconds: number) => void): void {
    const buckets = this.buckets;
    this.buckets = [];
    const total = buckets.reduce((sum, b) => sum + b.count, 0);
    const scale = Math.min(1, EVENT_LOOP_SAMPLES_PER_SCRAPE_MAX / Math.max(1, total));
    for (const bucket of buckets) {
      const count = Math.round(bucket.count * scale);
      for (let n = 0; n < count; n++) observe(bucket.medianDelaySeconds);
    }
  }
}

/**
 * One histogram's counts: a slot per bucket (upper bounds ascending, then +Inf), the sum and
 * the count. `observe` allocates nothing: it runs once per applied command.
 */
export class BucketCounts {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly boundsSeconds: readonly number[]) {
    this.counts = new Float64Array(boundsSeconds.length + 1);
  }

  observe(seconds: number): void {
    const bounds = this.boundsSeconds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.counts[i] = this.counts[i]! + 1;
    this.sum += seconds;
    this.count += 1;
  }
}

/**
 * A Prometheus histogram over BucketCounts, with at most one label and a bounded number of
 * label values (`child` answers null past `childrenMax`). prom-client's Registry reads any
 * object with a name, help, type and `get()`; this is one.
 */
export class BucketHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly children = new Map<string, BucketCounts>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly boundsSeconds: readonly number[],
    private readonly labelName: string | null,
    private readonly childrenMax: number,
  ) {
    assert(
      boundsSeconds.every((b, i) => i === 0 || b > boundsSeconds[i - 1]!),
      'bounds ascending',
    );
  }

  /** The counts for this label value (cached: the same object each time). */
  child(labelValue: string): BucketCounts | null {
    let counts = this.children.get(labelValue);
    if (counts === undefined) {
      if (this.children.size >= this.childrenMax) return null;
      counts = new BucketCounts(this.boundsSeconds);
      this.children.set(labelValue, counts);
    }
    return counts;
  }

  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  }> {
    const values: {
      labels: Record<string, string | number>;
      value: number;
      metricName: string;
    }[] = [];
    for (const [labelValue, c] of this.children) {
      const labels: Record<string, string> =
        this.labelName === null ? {} : { [this.labelName]: labelValue };
      let cumulative = 0;
      this.boundsSeconds.forEach((le, i) => {
        cumulative += c.counts[i]!;
        values.push({
          labels: { ...labels, le },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      });
      values.push({
        labels: { ...labels, le: '+Inf' },
        value: c.count,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: c.count, metricName: `${this.name}_count` });
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    };
  }
}

/** Registers `histogram` in `registry` (which reads it through `get()` alone). */
function registerBucketHistogram(registry: Registry, histogram: BucketHistogram): BucketHistogram {
  registry.registerMetric(histogram as unknown as Metric);
  return histogram;
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
  readonly dbSizeBytes?: () => number;
  readonly dbSizeInUseBytes?: () => number;
  /** Bytes to and from each peer by member id (the transport's counters). */
  readonly peerTraffic?: () => ReadonlyMap<NodeId, PeerTrafficView>;
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
    pendingProposals: member.pendingProposals,
    dbSizeBytes: live.dbSizeBytes?.() ?? null,
    ...watchCounts(state.watchHub.stats()),
    leases: state.lessor.size,
    proposalsFailed: member.proposalsFailed,
    dbSizeInUseBytes: live.dbSizeInUseBytes?.() ?? null,
    peerTraffic: peerTrafficByHex(live.peerTraffic?.()),
    requestIds: state.dedupe.size,
    requestIdDuplicates: state.dedupe.duplicatesAnswered,
  };
}

function peerTrafficByHex(
  traffic: ReadonlyMap<NodeId, PeerTrafficView> | undefined,
): ReadonlyMap<string, PeerTrafficView> {
  const byHex = new Map<string, PeerTrafficView>();
  if (traffic === undefined) return byHex;
  for (const [id, t] of traffic) {
    if (byHex.size >= MEMBERS_MAX) break;
    byHex.set(id.toString(16), { sentBytes: t.sentBytes, receivedBytes: t.receivedBytes });
  }
  return byHex;
}

function watchCounts(stats: ReturnType<TandemStateMachine['watchHub']['stats']>) {
  return {
    watchStreams: stats.streams,
    watchers: stats.synced + stats.unsynced + stats.victims,
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

  async open(path: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    return new DatasyncTimingHandle(
      await this.inner.open(path, mode, options),
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
  /**
   * The inner handle's, when it has one (else absent, so the WAL falls back to write then
   * datasync): a durable write is timed as the flush it includes (the write to the page cache
   * is microseconds of it), so the fsync histograms keep one observation per WAL save.
   */
  readonly writeDurable?: (data: Uint8Array, position: number) => Promise<void>;

  constructor(
    private readonly inner: FileHandle,
    private readonly monotonicMs: () => number,
    private readonly observe: (seconds: number) => void,
  ) {
    const durable = inner.writeDurable;
    if (durable === undefined) return;
    this.writeDurable = async (data, position) => {
      const startMs = this.monotonicMs();
      await durable.call(inner, data, position);
      this.observe(Math.max(0, this.monotonicMs() - startMs) / 1000);
    };
  }

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
