/**
 * The routing core on a hand-driven clock: leader choice and term fencing, same-zone reads,
 * a slow member losing traffic then ejected and probed back in, failures ejecting, the ejection
 * cap, hedge delay from the latency window and the hedge budget.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Ewma, LatencyWindow } from '../../src/routing/latency.js';
import {
  type MemberDescription,
  type MemberRole,
  Router,
  type RouterOptions,
  type Topology,
} from '../../src/routing/router.js';

function member(id: string, role: MemberRole = 'voter', zone = 'a'): MemberDescription {
  return { id, name: `n${id}`, clientUrl: `http://127.0.0.1:${2379 + Number(id)}`, role, zone };
}

function topology(members: MemberDescription[], leaderId: string | null = '1', term = 2): Topology {
  return { members, leaderId, term };
}

/** One attempt to `id` of `ms`, ending at now + ms; returns the new now. */
function serve(r: Router, id: string, nowMs: number, ms: number): number {
  const a = r.begin(id, nowMs);
  r.end(a, 'ok', nowMs + ms);
  return nowMs + ms;
}

function newRouter(options: Partial<RouterOptions> = {}): Router {
  const r = new Router({ zone: 'a', ...options });
  r.applyTopology(topology([member('1'), member('2'), member('3'), member('4', 'standby')]));
  return r;
}

describe('routing core', () => {
  test('writes go to the leader; a higher term moves them; a lower term does not', () => {
    const r = newRouter();
    assert.equal(r.pickLeader(0)?.id, '1');
    assert.equal(r.noteLeader('2', 1), false, 'an older term is ignored');
    assert.equal(r.pickLeader(0)?.id, '1');
    assert.equal(r.noteLeader('2', 3), true);
    assert.equal(r.pickLeader(0)?.id, '2');
    r.forgetLeader('2');
    const fallback = r.pickLeader(0);
    assert.ok(fallback !== null && fallback.role === 'voter', 'no leader: a voter');
  });

  test('a leader that fails in a row is passed over for writes until it answers', () => {
    const r = newRouter();
    for (let i = 0; i < 2; i++) r.end(r.begin('1', i), 'failed', i + 1);
    const w = r.pickLeader(10);
    assert.ok(w !== null && w.id !== '1', `writes avoid the failing leader, got ${w?.id}`);
    assert.ok(['2', '3'].includes(w.id));
  });

  test('every voter failing in a row: writes go to the one failing least, not nowhere', () => {
    const r = newRouter();
    // The leader killed (3 failures), the followers failing twice each while it was elected.
    for (let i = 0; i < 3; i++) r.end(r.begin('1', i), 'failed', i + 1);
    for (const id of ['2', '3']) for (let i = 0; i < 2; i++) r.end(r.begin(id, i), 'failed', i + 1);
    r.end(r.begin('2', 5), 'failed', 6);
    const w = r.pickLeader(10);
    assert.equal(w?.id, '3', 'the voter with the fewest failures in a row');
    assert.equal(r.pickLeader(10, new Set(['1', '2', '3'])), null, 'all excluded: none');
    assert.equal(r.report(10).decisions.none, 1);
  });

  test('reads never go to a standby, and prefer the own zone', () => {
    const r = new Router({ zone: 'b' });
    r.applyTopology(
      topology([
        member('1', 'voter', 'a'),
        member('2', 'replica', 'b'),
        member('3', 'standby', 'b'),
      ]),
    );
    for (let i = 0; i < 20; i++) assert.equal(r.pickRead(i)?.id, '2');
    // Even when the zone's member is slower than the other zone's.
    let now = 100;
    now = serve(r, '2', now, 30);
    now = serve(r, '1', now, 1);
    assert.equal(r.pickRead(now)?.id, '2');
    const report = r.report(now);
    assert.ok(report.decisions['read-zone'] >= 21);
  });

  test('a slow member loses reads at once, is ejected, and is probed back in', () => {
    const r = newRouter({ slowSamplesToEject: 3, ejectBaseMs: 1000 });
    let now = 0;
    for (const id of ['1', '2', '3']) now = serve(r, id, now, 2);
    now = serve(r, '3', now, 150);
    const picks = new Set<string>();
    for (let i = 0; i < 10; i++) picks.add(r.pickRead(now)!.id);
    assert.ok(!picks.has('3'), 'peak EWMA: one slow answer moves reads away');
    now = serve(r, '3', now, 150);
    now = serve(r, '3', now, 150);
    assert.equal(r.health('3'), 'ejected');
    assert.deepEqual(r.dueProbes(now), []);
    now += 1000;
    assert.deepEqual(
      r.dueProbes(now).map((m) => m.id),
      ['3'],
    );
    // A slow probe ejects it again for twice as long.
    const slowProbe = r.begin('3', now, true);
    now += 200;
    r.end(slowProbe, 'ok', now);
    assert.equal(r.health('3'), 'ejected');
    now += 1999;
    assert.deepEqual(r.dueProbes(now), [], 'the second ejection is twice as long');
    now += 1;
    const probe = r.begin('3', now, true);
    now += 2;
    r.end(probe, 'ok', now);
    assert.equal(r.health('3'), 'ok');
    assert.equal(r.report(now).ejections, 2);
  });

  test('a member outrun by hedges three times in a row is ejected; cancelled attempts do not count', () => {
    const r = newRouter({ slowSamplesToEject: 3 });
    let now = 0;
    for (const id of ['1', '2', '3']) now = serve(r, id, now, 2);
    for (let i = 0; i < 5; i++) r.end(r.begin('2', now), 'abandoned', now + 5);
    assert.equal(r.health('2'), 'ok', 'cancelled by the caller: not slow');
    for (let i = 0; i < 3; i++) r.end(r.begin('2', now), 'outrun', now + 5);
    assert.equal(r.health('2'), 'ejected');
  });

  test('a pending attempt makes its member costly before it returns', () => {
    const r = newRouter();
    let now = 0;
    for (const id of ['1', '2', '3']) now = serve(r, id, now, 2);
    r.begin('2', now); // hangs (SIGSTOPped member)
    now += 100;
    for (let i = 0; i < 5; i++) assert.notEqual(r.pickRead(now)?.id, '2');
  });

  test('failures eject, but never more than the fraction of serving members', () => {
    const r = newRouter({ ejectFractionMax: 0.5 });
    for (const id of ['1', '2']) {
      for (let i = 0; i < 3; i++) r.end(r.begin(id, i), 'failed', i + 1);
    }
    const report = r.report(10);
    const ejected = report.members.filter((m) => m.health === 'ejected').map((m) => m.id);
    assert.deepEqual(ejected, ['1'], 'floor(3 × 0.5) = 1 of 3 serving members out');
    assert.equal(r.pickRead(10)?.id, '3', 'the failing member left in is a last resort');
  });

  test('all members out: reads fall back to the one coming back soonest', () => {
    const r = new Router({ ejectFractionMax: 1 });
    r.applyTopology(topology([member('1'), member('2')]));
    r.end(r.begin('1', 0), 'failed', 1);
    r.end(r.begin('1', 1), 'failed', 2);
    r.end(r.begin('2', 5), 'failed', 6);
    r.end(r.begin('2', 6), 'failed', 7);
    assert.equal(r.pickRead(10)?.id, '1');
    assert.equal(r.report(10).decisions['read-ejected-fallback'], 1);
  });

  test('hedge delay is the window quantile, clamped; the budget bounds hedges', () => {
    const r = new Router({ hedgeBudgetRatio: 0.1, hedgeBudgetBurst: 2, hedgeDelayDefaultMs: 50 });
    r.applyTopology(topology([member('1'), member('2')]));
    assert.equal(r.hedgeDelayMs(), 50, 'no samples: the default');
    let now = 0;
    for (let i = 1; i <= 100; i++) now = serve(r, '1', now, i % 10 === 0 ? 40 : 3);
    assert.equal(r.hedgeDelayMs(), 3, 'p90 of 90 × 3 ms and 10 × 40 ms');
    // 100 requests added 10 tokens, capped at the burst of 2.
    assert.equal(r.tryHedge(), true);
    assert.equal(r.tryHedge(), true);
    assert.equal(r.tryHedge(), false);
    for (let i = 0; i < 10; i++) r.begin('1', now);
    assert.equal(r.tryHedge(), true, '10 more requests earn one hedge');
    assert.deepEqual(r.report(now).hedges, { sent: 3, won: 0, refused: 1 });
  });

  test('a member removed from the topology is forgotten; its attempts end harmlessly', () => {
    const r = newRouter();
    const a = r.begin('3', 0);
    r.applyTopology(topology([member('1'), member('2')]));
    r.end(a, 'failed', 5);
    assert.equal(r.member('3'), null);
    assert.deepEqual(r.memberIds().sort(), ['1', '2']);
  });
});

describe('latency statistics', () => {
  test('peak EWMA: a higher sample counts at once, a lower one by elapsed time', () => {
    const e = new Ewma(100);
    e.observe(10, 0);
    e.observe(50, 1);
    assert.equal(e.value, 50);
    e.observe(10, 1);
    assert.equal(e.value, 50, 'no time passed: no weight');
    e.observe(10, 101);
    assert.ok(Math.abs(e.value! - (50 - 40 * (1 - Math.exp(-1)))) < 1e-9);
    assert.ok(e.valueAt(10_000)! < 0.001, 'unused, it decays toward zero');
  });

  test('window quantile matches a sort of the last samples', () => {
    const w = new LatencyWindow(4, 1);
    for (const v of [9, 1, 5, 7, 3]) w.add(v);
    assert.equal(w.quantile(0.5), 3, 'nearest rank of 1, 3, 5, 7');
    assert.equal(w.quantile(1), 7);
    assert.equal(w.quantile(0), 1);
  });
});
