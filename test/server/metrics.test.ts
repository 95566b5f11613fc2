/**
 * The member's Prometheus metrics (src/server/metrics.ts) against a fake view and fake pieces:
 * names, types, values and labels as the strict text parser reads them back, the event
 * counters, the fdatasync histogram, the event-loop delay histogram (a fake source against a
 * naive reference, then this process's real loop), the staleness clock, and one registry per
 * member.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { register as globalRegistry } from 'prom-client';
import { type Entry, EntryType } from '../../src/raft/types.js';
import { MemberEvents } from '../../src/server/events.js';
import {
  ApplyTracker,
  delayBuckets,
  EVENT_LOOP_DELAY_BUCKETS_SECONDS,
  type EventLoopDelaySource,
  MemberMetrics,
  type MetricsView,
  POLICY_ACTION_KINDS_MAX,
  standbyStalenessSeconds,
} from '../../src/server/metrics.js';
import type { FileHandle, FileSystem } from '../../src/storage/fs.js';
import { type PromFamily, parsePromText, sampleValue } from './prom-text.js';

const VOTER: MetricsView = {
  term: 7,
  commitIndex: 120,
  appliedIndex: 118,
  isLeader: true,
  hasLeader: true,
  role: 'voter',
  standbyMode: 'warm',
  zone: 'zone-a',
  lagEntries: new Map([
    ['n1', 0],
    ['n2', 3],
    ['n3', 40],
  ]),
  standbyStalenessSeconds: null,
  reads: { local: 11, barrier: 4 },
  pendingProposals: 2,
  dbSizeBytes: 4096,
  watchStreams: 3,
  watchers: 5,
  leases: 6,
  proposalsFailed: 9,
  dbSizeInUseBytes: 2048,
  peerTraffic: new Map([
    ['2', { sentBytes: 1000, receivedBytes: 700 }],
    ['3', { sentBytes: 900, receivedBytes: 0 }],
  ]),
  requestIds: 12,
  requestIdDuplicates: 3,
};

/** Resolution of the fake event-loop sources: 10 ms, as in production. */
const RESOLUTION_NS = 10e6;

/**
 * An event-loop delay source holding its samples (ns), answering percentiles as an HDR
 * histogram does: the sample at rank max(1, round(percent / 100 × count)).
 */
class FakeLoop implements EventLoopDelaySource {
  readonly resolutionNs = RESOLUTION_NS;
  samples: number[] = [];

  add(delayMs: number, times = 1): void {
    for (let i = 0; i < times; i++) this.samples.push(RESOLUTION_NS + Math.round(delayMs * 1e6));
    this.samples.sort((a, b) => a - b);
  }

  get count(): number {
    return this.samples.length;
  }

  get min(): number {
    return this.samples[0] ?? 0;
  }

  get max(): number {
    return this.samples[this.samples.length - 1] ?? 0;
  }

  reset(): void {
    this.samples = [];
  }

  percentile(percent: number): number {
    assert.ok(percent > 0 && percent <= 100, `percentile ${percent} in (0, 100]`);
    const rank = Math.max(1, Math.floor((percent / 100) * this.samples.length + 0.5));
    return this.samples[rank - 1]!;
  }
}

function metricsOf(
  view: MetricsView | null,
  monotonicMs = () => 0,
  eventLoopDelay: EventLoopDelaySource | null = new FakeLoop(),
): MemberMetrics {
  const m = new MemberMetrics({
    name: 'n1',
    memberIdHex: 'abc123',
    monotonicMs,
    processMetrics: false,
    eventLoopDelay,
  });
  if (view !== null) m.attach(() => view);
  return m;
}

async function scrape(m: MemberMetrics): Promise<Map<string, PromFamily>> {
  return parsePromText(await m.scrape());
}

describe('metrics: names, types, values', () => {
  test("every family is tandem_* (or etcd's own names), typed as its name says, with the view values", async () => {
    const f = await scrape(metricsOf(VOTER));
    const types = Object.fromEntries([...f.values()].map((x) => [x.name, x.type]));
    assert.deepEqual(types, {
      tandem_member_info: 'gauge',
      tandem_member_role: 'gauge',
      tandem_raft_term: 'gauge',
      tandem_raft_commit_index: 'gauge',
      tandem_raft_applied_index: 'gauge',
      tandem_raft_is_leader: 'gauge',
      tandem_raft_has_leader: 'gauge',
      tandem_replication_lag_entries: 'gauge',
      tandem_standby_staleness_seconds: 'gauge',
      tandem_reads_total: 'counter',
      tandem_raft_leader_changes_total: 'counter',
      tandem_redundancy_replacements_total: 'counter',
      tandem_redundancy_policy_actions_total: 'counter',
      tandem_wal_fsync_seconds: 'histogram',
      tandem_event_loop_delay_seconds: 'histogram',
      grpc_server_handled_total: 'counter',
      grpc_server_handling_seconds: 'histogram',
      etcd_server_has_leader: 'gauge',
      etcd_server_is_leader: 'gauge',
      etcd_server_leader_changes_seen_total: 'counter',
      etcd_server_proposals_committed_total: 'gauge',
      etcd_server_proposals_applied_total: 'gauge',
      etcd_server_proposals_pending: 'gauge',
      etcd_mvcc_db_total_size_in_bytes: 'gauge',
      etcd_debugging_mvcc_watch_stream_total: 'gauge',
      etcd_debugging_mvcc_watcher_total: 'gauge',
      tandem_leases: 'gauge',
      tandem_request_id_duplicates_total: 'counter',
      tandem_request_ids: 'gauge',
      etcd_server_proposals_failed_total: 'counter',
      etcd_mvcc_db_total_size_in_use_in_bytes: 'gauge',
      etcd_network_peer_sent_bytes_total: 'counter',
      etcd_network_peer_received_bytes_total: 'counter',
      etcd_network_peer_round_trip_time_seconds: 'histogram',
      etcd_server_apply_duration_seconds: 'histogram',
      etcd_disk_wal_fsync_duration_seconds: 'histogram',
      tandem_event_loop_delay_p50_seconds: 'gauge',
      tandem_event_loop_delay_p99_seconds: 'gauge',
      tandem_event_loop_delay_max_seconds: 'gauge',
    });
    assert.equal(sampleValue(f, 'etcd_server_proposals_failed_total'), 9);
    assert.equal(sampleValue(f, 'etcd_mvcc_db_total_size_in_use_in_bytes'), 2048);
    assert.equal(sampleValue(f, 'etcd_network_peer_sent_bytes_total', { To: '2' }), 1000);
    assert.equal(sampleValue(f, 'etcd_network_peer_sent_bytes_total', { To: '3' }), 900);
    assert.equal(sampleValue(f, 'etcd_network_peer_received_bytes_total', { From: '2' }), 700);
    assert.equal(sampleValue(f, 'etcd_debugging_mvcc_watch_stream_total'), 3);
    assert.equal(sampleValue(f, 'etcd_debugging_mvcc_watcher_total'), 5);
    assert.equal(sampleValue(f, 'tandem_leases'), 6);
    assert.equal(sampleValue(f, 'tandem_request_id_duplicates_total'), 3);
    assert.equal(sampleValue(f, 'tandem_request_ids'), 12);
    // etcd's names carry the same values.
    assert.equal(sampleValue(f, 'etcd_server_is_leader'), 1);
    assert.equal(sampleValue(f, 'etcd_server_has_leader'), 1);
    assert.equal(sampleValue(f, 'etcd_server_proposals_committed_total'), 120);
    assert.equal(sampleValue(f, 'etcd_server_proposals_applied_total'), 118);
    assert.equal(sampleValue(f, 'etcd_server_proposals_pending'), 2);
    assert.equal(sampleValue(f, 'etcd_mvcc_db_total_size_in_bytes'), 4096);
    for (const x of f.values()) assert.ok(x.help !== null && x.help.length > 10, x.name);
    assert.equal(sampleValue(f, 'tandem_raft_term'), 7);
    assert.equal(sampleValue(f, 'tandem_raft_commit_index'), 120);
    assert.equal(sampleValue(f, 'tandem_raft_applied_index'), 118);
    assert.equal(sampleValue(f, 'tandem_raft_is_leader'), 1);
    assert.equal(sampleValue(f, 'tandem_raft_has_leader'), 1);
    assert.equal(
      sampleValue(f, 'tandem_member_info', { name: 'n1', zone: 'zone-a', id: 'abc123' }),
      1,
    );
    assert.equal(sampleValue(f, 'tandem_replication_lag_entries', { member: 'n3' }), 40);
    assert.equal(f.get('tandem_replication_lag_entries')!.samples.length, 3);
    assert.equal(sampleValue(f, 'tandem_reads_total', { path: 'local' }), 11);
    assert.equal(sampleValue(f, 'tandem_reads_total', { path: 'barrier' }), 4);
    // Not a warm or cold standby: no staleness series at all (absent, not 0).
    assert.equal(f.get('tandem_standby_staleness_seconds')!.samples.length, 0);
    // A voter's role series: voter 1, every other 0; the standby mode is not a voter's label.
    assert.equal(sampleValue(f, 'tandem_member_role', { role: 'voter', standby_mode: '' }), 1);
    assert.equal(
      sampleValue(f, 'tandem_member_role', { role: 'standby', standby_mode: 'warm' }),
      0,
    );
  });

  test('property: one role series is 1 (the view role), values and lag labels round-trip', async () => {
    const roles = ['voter', 'replica', 'standby', 'unknown'] as const;
    const modes = ['hot', 'warm', 'cold'] as const;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          role: fc.constantFrom(...roles),
          standbyMode: fc.constantFrom(...modes),
          commitIndex: fc.nat(1e9),
          behind: fc.nat(1000),
          // Member names as the registry allows (label values are escaped, never dropped).
          lag: fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.nat(1e6), {
            maxKeys: 8,
          }),
          staleness: fc.option(fc.double({ min: 0, max: 1e6, noNaN: true })),
        }),
        async (r) => {
          const view: MetricsView = {
            ...VOTER,
            role: r.role,
            standbyMode: r.standbyMode,
            commitIndex: r.commitIndex,
            appliedIndex: Math.max(0, r.commitIndex - r.behind),
            lagEntries: new Map(Object.entries(r.lag)),
            standbyStalenessSeconds: r.staleness,
          };
          const f = await scrape(metricsOf(view));
          const on = f.get('tandem_member_role')!.samples.filter((s) => s.value === 1);
          assert.equal(on.length, 1);
          assert.equal(on[0]!.labels.role, r.role);
          assert.equal(on[0]!.labels.standby_mode, r.role === 'standby' ? r.standbyMode : '');
          assert.equal(sampleValue(f, 'tandem_raft_commit_index'), view.commitIndex);
          assert.equal(sampleValue(f, 'tandem_raft_applied_index'), view.appliedIndex);
          const lag = f.get('tandem_replication_lag_entries')!.samples;
          assert.deepEqual(
            Object.fromEntries(lag.map((s) => [s.labels.member, s.value])),
            Object.fromEntries(Object.entries(r.lag)),
          );
          const stale = f.get('tandem_standby_staleness_seconds')!.samples;
          assert.deepEqual(
            stale.map((s) => [s.labels.standby_mode, s.value]),
            r.staleness === null ? [] : [[r.standbyMode, r.staleness]],
          );
        },
      ),
      { numRuns: 60 },
    );
  });

  test('each scrape reads the live view again', async () => {
    let term = 1;
    const m = metricsOf(null);
    m.attach(() => ({ ...VOTER, term }));
    assert.equal(sampleValue(await scrape(m), 'tandem_raft_term'), 1);
    term = 9;
    assert.equal(sampleValue(await scrape(m), 'tandem_raft_term'), 9);
    assert.throws(() => m.attach(() => VOTER), /attached once/);
  });
});

describe('metrics: events', () => {
  test('leader changes count as etcd counts them: a new known leader', async () => {
    const m = metricsOf(VOTER);
    for (const lead of [0, 5, 5, 0, 5, 6, 6, 0]) m.noteLeader(lead);
    // 5 (new), 5 again after none (etcd counts it too), 6.
    assert.equal(sampleValue(await scrape(m), 'tandem_raft_leader_changes_total'), 3);
  });

  test('policy events: replacements, actions by kind and outcome, kinds bounded', async () => {
    const m = metricsOf(VOTER);
    m.notePolicyEvent({ action: 'replace', reason: 'n2 silent' });
    m.notePolicyEvent({ action: 'replace', reason: 'n3 silent', error: 'timed out' });
    m.notePolicyEvent({ action: 'warm-refresh', reason: 'due' });
    m.notePolicyEvent({ action: 'Not A Kind!', reason: 'x' });
    let f = await scrape(m);
    assert.equal(sampleValue(f, 'tandem_redundancy_replacements_total'), 1);
    const actions = 'tandem_redundancy_policy_actions_total';
    assert.equal(sampleValue(f, actions, { kind: 'replace', outcome: 'ok' }), 1);
    assert.equal(sampleValue(f, actions, { kind: 'replace', outcome: 'error' }), 1);
    assert.equal(sampleValue(f, actions, { kind: 'warm-refresh', outcome: 'ok' }), 1);
    assert.equal(sampleValue(f, actions, { kind: 'other', outcome: 'ok' }), 1);
    for (let i = 0; i < 3 * POLICY_ACTION_KINDS_MAX; i++) {
      m.notePolicyEvent({ action: `kind-${i}`, reason: 'flood' });
    }
    f = await scrape(m);
    const kinds = new Set(f.get(actions)!.samples.map((s) => s.labels.kind));
    assert.equal(kinds.size, POLICY_ACTION_KINDS_MAX + 1, 'the kinds kept, plus other');
    assert.ok(kinds.has('other') && kinds.has('replace'));
  });
});

/** A file system whose datasync takes `syncMs` of the fake clock, or fails. */
function fakeFs(clock: { ms: number }, syncMs: number, fail: boolean): FileSystem {
  const handle: FileHandle = {
    path: '/wal/0001',
    write: async () => {},
    read: async () => 0,
    datasync: async () => {
      clock.ms += syncMs;
      if (fail) throw new Error('EIO');
    },
    sync: async () => {},
    truncate: async () => {},
    allocate: async () => {},
    size: async () => 0,
    close: async () => {},
  };
  return {
    open: async () => handle,
    rename: async () => {},
    unlink: async () => {},
    readdir: async () => ['a'],
    mkdir: async () => {},
    syncDir: async () => {},
    stat: async () => null,
  };
}

describe('metrics: fdatasync histogram', () => {
  test('each successful datasync is one observation of its duration in seconds', async () => {
    const clock = { ms: 1_000 };
    const m = metricsOf(VOTER, () => clock.ms);
    const fs = m.timedFileSystem(fakeFs(clock, 3, false));
    const h = await fs.open('/wal/0001', 'write');
    assert.equal(h.path, '/wal/0001');
    await h.datasync();
    await h.datasync();
    assert.deepEqual(await fs.readdir('/wal'), ['a'], 'the rest passes through');
    const f = await scrape(m);
    const name = 'tandem_wal_fsync_seconds';
    assert.equal(sampleValue(f, `${name}_count`), 2);
    assert.ok(Math.abs(sampleValue(f, `${name}_sum`) - 0.006) < 1e-9);
    assert.equal(sampleValue(f, `${name}_bucket`, { le: '0.002' }), 0);
    assert.equal(sampleValue(f, `${name}_bucket`, { le: '0.004' }), 2);
  });

  test('a durable write (write and flush in one) is passed through, asked for, and timed as one flush', async () => {
    const clock = { ms: 0 };
    const m = metricsOf(VOTER, () => clock.ms);
    const inner = fakeFs(clock, 0, false);
    const asked: unknown[] = [];
    const written: number[] = [];
    const base = await inner.open('/wal/0001', 'write');
    const durableFs: FileSystem = {
      ...inner,
      open: async (_path, _mode, options) => {
        asked.push(options);
        return {
          ...base,
          writeDurable: async (data: Uint8Array) => {
            clock.ms += 5;
            written.push(data.length);
          },
        };
      },
    };
    const timed = m.timedFileSystem(durableFs);
    const h = await timed.open('/wal/0001', 'write', { durableWrites: true });
    assert.deepEqual(asked, [{ durableWrites: true }], 'the option reaches the file system');
    assert.ok(h.writeDurable !== undefined, 'offered when the inner handle offers it');
    await h.writeDurable(new Uint8Array(8), 0);
    assert.deepEqual(written, [8]);
    const f = await scrape(m);
    assert.equal(sampleValue(f, 'tandem_wal_fsync_seconds_count'), 1);
    assert.ok(Math.abs(sampleValue(f, 'tandem_wal_fsync_seconds_sum') - 0.005) < 1e-9);
    // Absent when the inner handle has none: the WAL then writes and flushes in two steps.
    const plain = await m.timedFileSystem(inner).open('/wal/0001', 'write');
    assert.equal(plain.writeDurable, undefined);
  });

  test('a failed datasync rethrows and is not a duration', async () => {
    const clock = { ms: 0 };
    const m = metricsOf(VOTER, () => clock.ms);
    const h = await m.timedFileSystem(fakeFs(clock, 50, true)).open('/wal/0001', 'write');
    await assert.rejects(h.datasync(), /EIO/);
    assert.equal(sampleValue(await scrape(m), 'tandem_wal_fsync_seconds_count'), 0);
  });
});

describe('metrics: event-loop delay histogram', () => {
  const name = 'tandem_event_loop_delay_seconds';
  const bucket = (f: Map<string, PromFamily>, le: string): number =>
    sampleValue(f, `${name}_bucket`, { le });

  test('buckets tell 1, 5, 10 and 50 ms apart', () => {
    for (const ms of [1, 5, 10, 50]) {
      assert.ok(EVENT_LOOP_DELAY_BUCKETS_SECONDS.includes(ms / 1000), `${ms} ms is a bound`);
    }
  });

  test('each scrape moves the samples since the last one in (delay = sample - resolution)', async () => {
    const loop = new FakeLoop();
    const m = metricsOf(VOTER, () => 0, loop);
    loop.add(0.2, 50);
    loop.add(0.8, 20);
    loop.add(1.5, 10);
    loop.add(4, 10);
    loop.add(8, 5);
    loop.add(40, 3);
    loop.add(90, 1);
    loop.add(7000, 1); // beyond the last bound: +Inf only
    let f = await scrape(m);
    const expected: readonly [string, number][] = [
      ['0.0005', 50],
      ['0.001', 70],
      ['0.002', 80],
      ['0.003', 80],
      ['0.005', 90],
      ['0.01', 95],
      ['0.03', 95],
      ['0.05', 98],
      ['0.075', 98],
      ['0.1', 99],
      ['5', 99],
      ['+Inf', 100],
    ];
    for (const [le, count] of expected) assert.equal(bucket(f, le), count, `le=${le}`);
    assert.equal(sampleValue(f, `${name}_count`), 100);
    // Every bucket here holds equal samples, so its median is exact and so is the sum.
    const sumMs = 0.2 * 50 + 0.8 * 20 + 1.5 * 10 + 4 * 10 + 8 * 5 + 40 * 3 + 90 + 7000;
    assert.ok(Math.abs(sampleValue(f, `${name}_sum`) - sumMs / 1000) < 1e-9);
    // Nothing new: nothing moves.
    f = await scrape(m);
    assert.equal(sampleValue(f, `${name}_count`), 100);
    // A loop never late (samples of exactly the resolution, or early) is a delay of 0; only
    // the new samples are added.
    loop.samples.push(RESOLUTION_NS - 5000, RESOLUTION_NS, RESOLUTION_NS);
    loop.add(60, 2);
    f = await scrape(m);
    assert.equal(bucket(f, '0.0005'), 53);
    assert.equal(bucket(f, '0.05'), 101);
    assert.equal(bucket(f, '0.075'), 103);
    assert.equal(sampleValue(f, `${name}_count`), 105);
  });

  test('property: bucket counts and medians equal a naive scan of the samples', () => {
    const bounds = EVENT_LOOP_DELAY_BUCKETS_SECONDS;
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: RESOLUTION_NS - 1e6, max: RESOLUTION_NS + 8e9 }), {
          maxLength: 400,
        }),
        (samples) => {
          const loop = new FakeLoop();
          loop.samples = [...samples].sort((a, b) => a - b);
          const got = delayBuckets(loop, bounds);
          // The naive reference: each sample's delay placed by a linear scan of the bounds.
          const naive: number[][] = Array.from({ length: bounds.length + 1 }, () => []);
          for (const sample of loop.samples) {
            const at = bounds.findIndex((b) => sample - RESOLUTION_NS <= b * 1e9);
            naive[at === -1 ? bounds.length : at]!.push(sample);
          }
          assert.deepEqual(
            got.map((b) => b.count),
            samples.length === 0 ? [] : naive.map((inBucket) => inBucket.length),
          );
          got.forEach((b, i) => {
            const inBucket = naive[i]!;
            if (inBucket.length === 0) return;
            const upper = bounds[i] ?? Number.POSITIVE_INFINITY;
            const median = inBucket[Math.ceil(inBucket.length / 2) - 1]!;
            const delay = Math.max(0, (median - RESOLUTION_NS) / 1e9);
            assert.equal(b.medianDelaySeconds, Math.min(upper, delay), `bucket ${i} median`);
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  test("this process's real loop: a 120 ms block shows as a delay above 75 ms", async () => {
    // No eventLoopDelay option: the production default, monitorEventLoop().
    const m = new MemberMetrics({
      name: 'n1',
      memberIdHex: 'abc123',
      monotonicMs: () => 0,
      processMetrics: false,
    });
    // IntervalHistogram records nothing until its timer's second tick (the first only marks
    // the time): let it tick, so the block below is measured.
    await new Promise((resolve) => setTimeout(resolve, 40));
    await scrape(m);
    // The scrape reset the window, which forgets the last tick too: let it tick again before
    // the block, or the sample spanning the block is the one a reset drops.
    await new Promise((resolve) => setTimeout(resolve, 40));
    const blockUntilMs = performance.now() + 120;
    while (performance.now() < blockUntilMs) {}
    // The monitor's timer, due during the block, runs (and records) once the loop is free.
    await new Promise((resolve) => setTimeout(resolve, 40));
    const f = await scrape(m);
    const count = sampleValue(f, `${name}_count`);
    assert.ok(count >= 1, 'the monitor sampled the loop');
    assert.ok(bucket(f, '0.075') < count, 'one sample more than 75 ms late');
  });
});

describe('metrics: standby staleness', () => {
  test('grows with time since the last apply or snapshot install, as the member reports them', () => {
    const clock = { ms: 10_000 };
    const tracker = new ApplyTracker(() => clock.ms);
    const events = new MemberEvents();
    tracker.attach(events);
    const entry = (index: number): Entry => ({
      index,
      term: 1,
      type: EntryType.Normal,
      data: new Uint8Array(0),
    });
    clock.ms += 2_500;
    assert.equal(tracker.stalenessSeconds(), 2.5, 'since start before any apply');
    events.onApplied(entry(43), 'result');
    assert.equal(tracker.stalenessSeconds(), 0);
    clock.ms += 4_000;
    assert.equal(tracker.stalenessSeconds(), 4);
    events.onApplied(entry(44), undefined);
    clock.ms += 8_000;
    assert.equal(tracker.stalenessSeconds(), 8);
    // Other events (a tick, a leader change) are not an advance of the state.
    events.onTick(1);
    events.onSoftState({ lead: 1, raftState: 0 }, 2);
    assert.equal(tracker.stalenessSeconds(), 8);
    events.onSnapshotInstalled(900);
    assert.equal(tracker.stalenessSeconds(), 0);
  });

  test('reported for warm and cold standbys only', () => {
    const clock = { ms: 0 };
    const tracker = new ApplyTracker(() => clock.ms);
    clock.ms = 3_000;
    assert.equal(standbyStalenessSeconds('standby', 'warm', tracker), 3);
    assert.equal(standbyStalenessSeconds('standby', 'cold', tracker), 3);
    assert.equal(standbyStalenessSeconds('standby', 'hot', tracker), null);
    assert.equal(standbyStalenessSeconds('voter', 'warm', tracker), null);
    assert.equal(standbyStalenessSeconds('unknown', 'warm', tracker), null);
  });
});

describe('metrics: one registry per member', () => {
  test('two members in one process, process metrics on both, none in the global registry', async () => {
    const a = new MemberMetrics({ name: 'a', memberIdHex: '1', monotonicMs: () => 0 });
    const b = new MemberMetrics({ name: 'b', memberIdHex: '2', monotonicMs: () => 0 });
    a.attach(() => VOTER);
    b.attach(() => ({ ...VOTER, term: 8 }));
    const [fa, fb] = [await scrape(a), await scrape(b)];
    assert.equal(sampleValue(fa, 'tandem_raft_term'), 7);
    assert.equal(sampleValue(fb, 'tandem_raft_term'), 8);
    for (const f of [fa, fb]) {
      assert.equal(f.get('tandem_process_cpu_seconds_total')?.type, 'counter');
      assert.ok(f.has('tandem_nodejs_heap_size_used_bytes'));
      for (const name of f.keys()) assert.ok(/^(tandem_|grpc_server_|etcd_)/.test(name), name);
    }
    assert.match(a.contentType, /^text\/plain/);
    assert.ok(!(await globalRegistry.metrics()).includes('tandem_'));
  });
});

describe('the strict exposition parser the tests rely on', () => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
  test('reads a valid family', () => {
    const f = parsePromText(ok);
    assert.equal(sampleValue(f, 'a_total', { x: '1' }), 2);
    assert.equal(f.get('a_total')!.help, 'A.');
  });

  const bad: readonly [string, string][] = [
    ['a sample before its TYPE', 'a_total 1\n'],
    ['a duplicate series', `${ok}a_total{x="1"} 3\n`],
    ['a second TYPE', `${ok}# TYPE a_total counter\n`],
    ['a family split in two', `${ok}# TYPE b gauge\nb 1\na_total{x="2"} 1\n`],
    ['a bad value', '# TYPE b gauge\nb one\n'],
    ['a bad escape', '# TYPE b gauge\nb{x="\\t"} 1\n'],
    ['an unquoted label', '# TYPE b gauge\nb{x=1} 1\n'],
    ['no final newline', '# TYPE b gauge\nb 1'],
    [
      'buckets not cumulative',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    ],
    ['+Inf bucket != count', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'],
    ['a histogram sample with a wrong suffix', '# TYPE h histogram\nh_total 1\n'],
  ];
  for (const [what, text] of bad) {
    test(`rejects ${what}`, () => assert.throws(() => parsePromText(text)));
  }
});

test("gRPC calls are counted and timed under etcd's names and labels", async () => {
  const m = new MemberMetrics({ name: 'a', memberIdHex: '1', monotonicMs: () => 0 });
  m.noteGrpcCall('/etcdserverpb.KV/Put', 'unary', 0, 0.002);
  m.noteGrpcCall('/etcdserverpb.KV/Put', 'unary', 0, 0.003);
  m.noteGrpcCall('/etcdserverpb.KV/Range', 'unary', 11, 0.001);
  m.noteGrpcCall('/etcdserverpb.Watch/Watch', 'bidi', 1, 12);
  const f = parsePromText(await m.registry.metrics());
  const kv = { grpc_type: 'unary', grpc_service: 'etcdserverpb.KV' };
  assert.equal(
    sampleValue(f, 'grpc_server_handled_total', { ...kv, grpc_method: 'Put', grpc_code: 'OK' }),
    2,
  );
  assert.equal(
    sampleValue(f, 'grpc_server_handled_total', {
      ...kv,
      grpc_method: 'Range',
      grpc_code: 'OutOfRange',
    }),
    1,
  );
  const watch = {
    grpc_type: 'bidi_stream',
    grpc_service: 'etcdserverpb.Watch',
    grpc_method: 'Watch',
  };
  assert.equal(sampleValue(f, 'grpc_server_handled_total', { ...watch, grpc_code: 'Canceled' }), 1);
  assert.equal(
    sampleValue(f, 'grpc_server_handling_seconds_count', { ...kv, grpc_method: 'Put' }),
    2,
  );
  assert.equal(
    sampleValue(f, 'grpc_server_handling_seconds_bucket', {
      ...kv,
      grpc_method: 'Put',
      le: '0.005',
    }),
    2,
  );
});

describe('metrics: apply durations and peer round trips (allocation-free histograms)', () => {
  test('each timed apply is one observation in etcd_server_apply_duration_seconds', async () => {
    const m = metricsOf(VOTER);
    const timer = m.applyTimer();
    const name = 'etcd_server_apply_duration_seconds';
    let f = await scrape(m);
    assert.equal(sampleValue(f, `${name}_count`), 0);
    for (const seconds of [0.00005, 0.00005, 0.0003, 0.02, 100]) timer.observeSeconds(seconds);
    f = await scrape(m);
    assert.equal(sampleValue(f, `${name}_count`), 5);
    assert.ok(Math.abs(sampleValue(f, `${name}_sum`) - 100.0204) < 1e-9);
    assert.equal(sampleValue(f, `${name}_bucket`, { le: '0.0001' }), 2);
    assert.equal(sampleValue(f, `${name}_bucket`, { le: '0.0004' }), 3);
    assert.equal(sampleValue(f, `${name}_bucket`, { le: '0.0256' }), 4);
    assert.equal(sampleValue(f, `${name}_bucket`, { le: '+Inf' }), 5);
    // The production clock is fractional milliseconds: an apply takes microseconds.
    const start = timer.nowMs();
    assert.ok(timer.nowMs() >= start);
  });

  test('round trips per peer, labelled To with the member id in hex, bounded', async () => {
    const m = metricsOf(VOTER);
    const name = 'etcd_network_peer_round_trip_time_seconds';
    m.notePeerRoundTrip(0x2a, 0.0003);
    m.notePeerRoundTrip(0x2a, 0.002);
    m.notePeerRoundTrip(0x2b, 0.5);
    let f = await scrape(m);
    assert.equal(sampleValue(f, `${name}_count`, { To: '2a' }), 2);
    assert.equal(sampleValue(f, `${name}_bucket`, { To: '2a', le: '0.0004' }), 1);
    assert.equal(sampleValue(f, `${name}_count`, { To: '2b' }), 1);
    assert.equal(sampleValue(f, `${name}_bucket`, { To: '2b', le: '0.4096' }), 0);
    for (let id = 1; id <= 200; id++) m.notePeerRoundTrip(0x1000 + id, 0.001);
    f = await scrape(m);
    const peers = new Set(f.get(name)!.samples.map((s) => s.labels.To));
    assert.ok(peers.size <= 64, `${peers.size} label values (at most MEMBERS_MAX)`);
  });
});

describe('metrics: event-loop delay window gauges', () => {
  test('p50, p99 and max of the samples since the previous scrape, minus the resolution', async () => {
    const loop = new FakeLoop();
    const m = metricsOf(VOTER, () => 0, loop);
    loop.add(1, 98);
    loop.add(30, 1);
    loop.add(200, 1);
    let f = await scrape(m);
    const near = (a: number, b: number) => Math.abs(a - b) < 1e-9;
    assert.ok(near(sampleValue(f, 'tandem_event_loop_delay_p50_seconds'), 0.001));
    assert.ok(near(sampleValue(f, 'tandem_event_loop_delay_p99_seconds'), 0.03));
    assert.ok(near(sampleValue(f, 'tandem_event_loop_delay_max_seconds'), 0.2));
    assert.equal(loop.count, 0, 'the scrape reset the window');
    // A quiet window: the 200 ms stall no longer shows.
    loop.add(2, 50);
    f = await scrape(m);
    assert.ok(near(sampleValue(f, 'tandem_event_loop_delay_max_seconds'), 0.002));
    assert.ok(near(sampleValue(f, 'tandem_event_loop_delay_p99_seconds'), 0.002));
    assert.equal(sampleValue(f, 'tandem_event_loop_delay_seconds_count'), 150);
    // No sample since (two scrapes within one resolution): the last window's values stay and
    // the histogram gains nothing.
    f = await scrape(m);
    assert.ok(near(sampleValue(f, 'tandem_event_loop_delay_p50_seconds'), 0.002));
    assert.equal(sampleValue(f, 'tandem_event_loop_delay_seconds_count'), 150);
  });
});
