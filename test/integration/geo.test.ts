/**
 * Geo latency on real processes (issue 5): two zones, and the transport's test-mode fault rules
 * delay every peer message between them by DELAY_MS one way (both directions, set through the
 * admin API). Zone a: voters n1, n2 and the leader (`preferLeaderZone`); zone b: voter n3 and
 * replica n4. Real clients throughout (raw gRPC, the etcd v3 API).
 *
 * 1. A write commits at quorum latency: with a quorum inside zone a its median latency is below
 *    the cross-zone round trip, which no commit waiting for the far voter can beat; once the
 *    near voter is made far too, it is at least one round trip (the control that lets the test
 *    fail).
 * 2. The far replica trails while writes stream (the leader's lag view, applied indexes), and a
 *    serializable read there right after a write is stale.
 * 3. A bounded read on the far replica with a bound below its lag is never staler than the bound
 *    (it waits on a round trip to the leader); with a large bound it is served locally (the
 *    member's read counters).
 *
 * Margins are relative to DELAY_MS, never tight absolute timings: a round trip is a hard lower
 * bound for anything that waits for the other zone, so medians are compared with it (a loaded
 * 2-core machine slows local work too, but cannot make a round trip shorter).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember, MemberStatus } from '../../src/cli/local-cluster.js';
import { adminRequest, sleep, waitFor } from '../../src/cli/local-net.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

/** One-way delay between the zones; the round trip is twice this. */
const DELAY_MS = 40;
const RTT_MS = 2 * DELAY_MS;
/** A message delayed DELAY_MS may be released up to this early (Date.now() rounding). */
const TIMER_SLACK_MS = 3;
const PUTS_PER_SAMPLE = 15;
const STALE_TRIES = 10;
/** Concurrent writers while lag is sampled: entries in flight do not depend on one client's pace. */
const STREAM_WRITERS = 4;
const BOUNDED_TRIES = 8;
/** Below the one-way delay, hence below the far replica's lag. */
const SMALL_BOUND_MS = 20;
const LARGE_BOUND_MS = 60_000;
const LOCAL_READS = 20;
const ZONE_A = ['n1', 'n2'];
const ZONE_B = ['n3', 'n4'];

interface ReadCounters {
  readonly local: number;
  readonly barrier: number;
}

type GeoStatus = MemberStatus & {
  readonly reads: ReadCounters;
  readonly registry: readonly { name: string; lag: number | null }[];
};

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe('geo latency: two zones 40 ms apart', { timeout: 120_000 }, () => {
  let c: LocalCluster;
  const conns = new Map<string, ReturnType<typeof grpcClients>>();

  before(async () => {
    c = await startCluster({
      label: 'geo',
      size: 4,
      roles: {
        n1: { role: 'voter', zone: 'zone-a' },
        n2: { role: 'voter', zone: 'zone-a' },
        n3: { role: 'voter', zone: 'zone-b' },
        n4: { role: 'replica', zone: 'zone-b' },
      },
      extraConfig: {
        replication: { preferLeaderZone: 'zone-a' },
        testMode: { faultInjection: true },
      },
    });
    for (const m of c.members) conns.set(m.name, grpcClients(m.spec.client));
    // Every cross-zone link, both directions.
    for (const [from, to] of [
      [ZONE_A, ZONE_B],
      [ZONE_B, ZONE_A],
    ] as const) {
      for (const name of from) {
        await adminRequest(c.member(name).spec.admin, 'POST', '/faults', {
          links: to.map((peer) => ({ peer, delayMs: DELAY_MS })),
        });
      }
    }
  });

  after(async () => {
    for (const conn of conns.values()) conn.close();
    await c?.destroy({ kill: true });
  });

  const kv = (m: LocalMember) => conns.get(m.name)!.kv;
  const status = (m: LocalMember) => m.status() as Promise<GeoStatus>;

  async function put(m: LocalMember, key: string, value: string): Promise<void> {
    await call(kv(m), 'Put', { key: Buffer.from(key), value: Buffer.from(value) }, 5_000);
  }

  async function get(
    m: LocalMember,
    key: string,
    opts: { serializable?: boolean; boundMs?: number } = {},
  ): Promise<string | null> {
    const metadata: Record<string, string> =
      opts.boundMs === undefined ? {} : { 'tandem-max-staleness-ms': String(opts.boundMs) };
    const res = await call(
      kv(m),
      'Range',
      { key: Buffer.from(key), serializable: opts.serializable ?? false },
      5_000,
      metadata,
    );
    return ((res.kvs ?? []) as { value: Buffer }[])[0]?.value.toString() ?? null;
  }

  /** The leader, once it is in zone a (the preference moves it there). */
  function zoneALeader(): Promise<LocalMember> {
    return waitFor('a leader in zone a', 30_000, async () => {
      const l = await c.leader();
      return ZONE_A.includes(l.name) ? l : null;
    });
  }

  /** Median latency of sequential puts through `leader`. */
  async function putLatencyMs(leader: LocalMember, prefix: string): Promise<number> {
    const samples: number[] = [];
    for (let i = 0; i < PUTS_PER_SAMPLE; i++) {
      const start = performance.now();
      await put(leader, `${prefix}/${i}`, String(i));
      samples.push(performance.now() - start);
    }
    return median(samples);
  }

  /** `writers` clients putting through `leader` back to back until stopped (bounded in count). */
  function streamWrites(leader: LocalMember, prefix: string, writers = 1) {
    let stop = false;
    let written = 0;
    const done = Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; !stop && i < 10_000; i++) {
          await put(leader, `${prefix}/${w}/${i % 50}`, String(i));
          written++;
        }
      }),
    );
    return async (): Promise<number> => {
      stop = true;
      await done;
      return written;
    };
  }

  test('a write commits at quorum latency: the near quorum, not the far voter', () =>
    c.guard('quorum latency', async () => {
      const leader = await zoneALeader();
      const near = c.member(ZONE_A.find((n) => n !== leader.name)!);
      await put(leader, 'geo/warmup', 'x');
      const nearMs = await putLatencyMs(leader, 'geo/near');
      // Control: the near voter is made far too; every quorum now needs a cross-zone round trip.
      await adminRequest(leader.spec.admin, 'POST', '/faults', {
        links: [{ peer: near.name, delayMs: DELAY_MS }],
      });
      await adminRequest(near.spec.admin, 'POST', '/faults', {
        links: [{ peer: leader.name, delayMs: DELAY_MS }],
      });
      let farMs: number;
      try {
        farMs = await putLatencyMs(leader, 'geo/far');
      } finally {
        for (const [m, peer] of [
          [leader, near],
          [near, leader],
        ] as const) {
          await adminRequest(m.spec.admin, 'POST', '/faults', {
            links: [{ peer: peer.name, delayMs: 0 }],
          });
        }
      }
      process.stderr.write(
        `put median: quorum in zone a ${nearMs.toFixed(1)} ms, quorum across zones ${farMs.toFixed(1)} ms (RTT ${RTT_MS} ms)\n`,
      );
      // A cross-zone quorum cannot commit faster than a round trip (the control) ...
      assert.ok(farMs >= RTT_MS - TIMER_SLACK_MS, 'a cross-zone quorum costs a round trip');
      // ... so a median below it means commits did not wait for the far voter.
      assert.ok(
        nearMs < RTT_MS - TIMER_SLACK_MS,
        `commit waits for the near quorum (${nearMs} ms)`,
      );
    }));

  test('the far replica trails while writes stream; a serializable read there is stale', () =>
    c.guard('replica lag', async () => {
      const leader = await zoneALeader();
      const near = c.member(ZONE_A.find((n) => n !== leader.name)!);
      const replica = c.member('n4');
      const stopWrites = streamWrites(leader, 'geo/stream', STREAM_WRITERS);
      const replicaLag: number[] = [];
      const nearLag: number[] = [];
      const appliedBehind: number[] = [];
      try {
        await sleep(200);
        for (let i = 0; i < 20; i++) {
          const [ls, rs] = await Promise.all([status(leader), status(replica)]);
          const lagOf = (name: string) => ls.registry.find((r) => r.name === name)?.lag ?? 0;
          replicaLag.push(lagOf('n4'));
          nearLag.push(lagOf(near.name));
          appliedBehind.push(ls.appliedIndex - rs.appliedIndex);
          await sleep(50);
        }
      } finally {
        const written = await stopWrites();
        assert.ok(written > 10, `writes streamed (${written})`);
      }
      process.stderr.write(
        `lag (entries, median of 20): replica n4 ${median(replicaLag)}, near voter ${median(nearLag)}; n4 applied behind the leader ${median(appliedBehind)}\n`,
      );
      assert.ok(median(replicaLag) >= 1, `the far replica trails: ${replicaLag.join(',')}`);
      assert.ok(median(replicaLag) > median(nearLag), 'the far replica trails the near voter');
      assert.ok(median(appliedBehind) >= 1, `n4 applies later: ${appliedBehind.join(',')}`);

      let stale = 0;
      for (let i = 0; i < STALE_TRIES; i++) {
        await put(leader, 'geo/stale', String(i));
        if ((await get(replica, 'geo/stale', { serializable: true })) !== String(i)) stale++;
      }
      process.stderr.write(
        `stale serializable reads right after a write: ${stale}/${STALE_TRIES}\n`,
      );
      assert.ok(stale >= STALE_TRIES / 2, `serializable reads on n4 are stale (${stale})`);
    }));

  test('a bounded read below the lag is never staler than its bound; a large bound reads locally', () =>
    c.guard('bounded reads', async () => {
      const leader = await zoneALeader();
      const replica = c.member('n4');
      // Writes stream meanwhile, so the replica hears from the leader every few ms: hearing
      // recently must not pass for being fresh when every message is DELAY_MS old.
      const stopWrites = streamWrites(leader, 'geo/background');
      const waitedMs: number[] = [];
      const countersBefore = (await status(replica)).reads;
      try {
        for (let i = 0; i < BOUNDED_TRIES; i++) {
          await put(leader, 'geo/bounded', String(i));
          // Acknowledged more than the bound ago: a read within the bound must see it.
          await sleep(SMALL_BOUND_MS + TIMER_SLACK_MS);
          const start = performance.now();
          const value = await get(replica, 'geo/bounded', { boundMs: SMALL_BOUND_MS });
          waitedMs.push(performance.now() - start);
          assert.equal(value, String(i), `bounded read ${i} on n4 is stale`);
        }
      } finally {
        await stopWrites();
      }
      process.stderr.write(
        `bounded reads (${SMALL_BOUND_MS} ms) on n4: median ${median(waitedMs).toFixed(1)} ms\n`,
      );
      // Not known fresh within 20 ms: each read waited for a round trip to the leader.
      assert.ok(median(waitedMs) >= RTT_MS - TIMER_SLACK_MS, 'a small bound waits for the leader');
      const smallBarriers = (await status(replica)).reads.barrier - countersBefore.barrier;
      assert.ok(smallBarriers >= BOUNDED_TRIES, `one barrier per read (${smallBarriers})`);

      await put(leader, 'geo/local', 'v');
      const before = (await status(replica)).reads;
      for (let i = 0; i < LOCAL_READS; i++) {
        await get(replica, 'geo/local', { boundMs: LARGE_BOUND_MS });
      }
      const afterReads = (await status(replica)).reads;
      const local = afterReads.local - before.local;
      const barriers = afterReads.barrier - before.barrier;
      process.stderr.write(`large bound: ${local} local reads, ${barriers} barriers\n`);
      // At most the first read needs a round trip; the rest are served from local state.
      assert.ok(barriers <= 1, `at most one barrier (${barriers})`);
      assert.ok(local >= LOCAL_READS - 1, `served locally (${local})`);
    }));
});
