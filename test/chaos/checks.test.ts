import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkAvailability,
  checkLeases,
  checkLostWrites,
  checkWatches,
  type WatchEvent,
  type WatcherLog,
} from '../../src/chaos/checks.js';
import type { Operation, Value } from '../../src/chaos/history.js';
import { checkLinearizability } from '../../src/chaos/linearizability.js';
import { Prng } from '../../src/util/prng.js';
import { build, cas, genLinearizable, r, w } from './gen.js';

// --- lost acknowledged writes -------------------------------------------------------------------

test('lost writes: the final value must come from a write that could be last', () => {
  const ops = build([
    w(0, 'x', 1, 0, 10),
    w(1, 'x', 2, 20, 30), // supersedes 1
    w(2, 'x', 3, 25, 35), // concurrent with 2: either may be last
    w(3, 'y', 1, 0, 10),
    w(4, 'y', 2, 20, 0, 'info'), // unknown: may be last, may never have happened
    w(5, 'z', 5, 0, 10, 'fail'),
  ]);
  const finals = (x: Value, y: Value) =>
    new Map<string, Value>([
      ['x', x],
      ['y', y],
    ]);
  assert.equal(checkLostWrites(ops, finals(2, 1)).verdict, 'ok');
  assert.equal(checkLostWrites(ops, finals(3, 2)).verdict, 'ok');

  const stale = checkLostWrites(ops, finals(1, 1));
  assert.equal(stale.verdict, 'violation');
  assert.equal(stale.lost.length, 1);
  assert.equal(stale.lost[0]!.key, 'x');
  assert.deepEqual(stale.lost[0]!.frontier.map((op) => op.input).sort(), [2, 3]);
  assert.deepEqual([...stale.lost[0]!.allowed].sort(), [2, 3]);
  assert.match(stale.lost[0]!.text, /final value 1, but it must be one of/);

  const vanished = checkLostWrites(ops, finals(3, null));
  assert.equal(vanished.verdict, 'violation');
  assert.equal(vanished.lost[0]!.key, 'y');
  assert.equal(vanished.acknowledgedWrites, 4);
});

test('lost writes: an acknowledged cas counts, a key never read is unknown', () => {
  const ops = build([w(0, 'x', 1, 0, 10), cas(1, 'x', 1, 2, 20, 30), w(2, 'q', 1, 0, 10)]);
  const result = checkLostWrites(ops, new Map([['x', 1]]));
  assert.equal(result.verdict, 'violation');
  const unread = checkLostWrites(ops, new Map([['x', 2]]));
  assert.equal(unread.verdict, 'unknown');
  assert.deepEqual(unread.keysUnread, ['q']);
});

test('lost writes is a necessary condition of linearizability with the final reads appended', () => {
  // On generated histories: the true final state passes both; a wrong final value that the
  // lost-write check rejects is also rejected by the linearizability checker.
  let rejected = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const { ops, finalState } = genLinearizable(seed, {
      ops: 60,
      processes: 4,
      keys: 2,
      valuesMax: 4,
      infoRate: 0.1,
      readRate: 0.3,
      casRate: 0.3,
      durationMsMax: 20,
      gapMsMax: 5,
    });
    const endMs = Math.max(
      ...ops.map((op) => (Number.isFinite(op.completeMs) ? op.completeMs : op.invokeMs)),
    );
    const withFinalReads = (values: Map<string, Value>): Operation[] =>
      build([
        ...ops,
        ...[...values].map(([key, v], i) => r(1000 + i, key, v, endMs + 1000, endMs + 1001)),
      ]);
    const truth = new Map([...finalState].filter(([key]) => ops.some((op) => op.key === key)));
    assert.equal(checkLostWrites(ops, truth).verdict, 'ok', `seed ${seed}`);
    assert.equal(checkLinearizability(withFinalReads(truth)).verdict, 'ok', `seed ${seed}`);
    const rng = new Prng(seed);
    const wrong = new Map(
      [...truth].map(([key]) => [key, rng.chance(0.2) ? null : 1 + rng.int(4)] as const),
    );
    if (checkLostWrites(ops, wrong).verdict === 'violation') {
      rejected++;
      assert.equal(
        checkLinearizability(withFinalReads(wrong)).verdict,
        'violation',
        `seed ${seed}`,
      );
    }
  }
  assert.ok(rejected > 10, `only ${rejected} wrong final states were rejected`);
});

// --- watches --------------------------------------------------------------------------------------

const writes = () =>
  build([
    { ...w(0, 'a', 'a1', 0, 10), revision: 2 },
    { ...w(1, 'b', 'b1', 0, 10), revision: 3 },
    { ...w(0, 'a', 'a2', 20, 30), revision: 4 },
    w(2, 'a', 'a3', 40, 0, 'info'), // committed at revision 5, the client never learned it
    { ...w(3, 'b', 'b2', 50, 60), revision: 6 },
  ]);
const put = (revision: number, key: string, value?: Value): WatchEvent =>
  value === undefined ? { revision, key, type: 'put' } : { revision, key, type: 'put', value };
const watcher = (events: WatchEvent[], extra: Partial<WatcherLog> = {}): WatcherLog => ({
  watcher: 'w1',
  keys: ['a'],
  startRevision: 1,
  events,
  ...extra,
});

test('watches: complete, ordered deliveries pass', () => {
  const result = checkWatches(writes(), [
    watcher([put(2, 'a', 'a1'), put(4, 'a', 'a2'), put(5, 'a', 'a3')]),
    watcher([put(3, 'b'), put(6, 'b', 'b2'), { revision: 7, key: 'b', type: 'delete' }], {
      watcher: 'w2',
      keys: ['b'],
    }),
    watcher([put(4, 'a', 'a2')], { watcher: 'w3', startRevision: 4 }),
    watcher([put(2, 'a', 'a1')], { watcher: 'w4', progressRevision: 2 }), // stopped early
  ]);
  assert.equal(result.verdict, 'ok', JSON.stringify(result.problems));
  assert.equal(result.watchersChecked, 4);
  assert.equal(result.eventsChecked, 8);
});

test('watches: each kind of problem is reported', () => {
  const cases: [WatchEvent[], Partial<WatcherLog>, string][] = [
    [[put(4, 'a'), put(2, 'a')], {}, 'out-of-order'],
    [[put(2, 'a'), put(2, 'a'), put(4, 'a')], {}, 'duplicate'],
    [[put(2, 'a'), put(5, 'a')], {}, 'gap'], // revision 4 missing
    [[put(2, 'a')], { progressRevision: 4 }, 'gap'], // caught up to 4 without seeing it
    [[put(2, 'a'), put(3, 'b'), put(4, 'a')], {}, 'foreign-key'],
    [[put(2, 'a'), put(4, 'a')], { startRevision: 3 }, 'before-start'],
    [[put(2, 'a', 'a2'), put(4, 'a')], {}, 'mismatch'],
    [[put(2, 'a'), put(3, 'a'), put(4, 'a')], {}, 'mismatch'], // revision 3 is key b
    [[put(2, 'a'), put(4, 'a'), put(5, 'a', 'zz')], {}, 'phantom'],
    [[put(2, 'a'), put(4, 'a'), put(5, 'a', 'a3'), put(9, 'a', 'a3')], {}, 'phantom'],
    [[put(2, 'a'), put(4, 'a'), { revision: 6, key: 'a', type: 'delete' }], {}, 'mismatch'],
  ];
  for (const [events, extra, kind] of cases) {
    const result = checkWatches(writes(), [watcher(events, extra)]);
    assert.equal(result.verdict, 'violation', kind);
    assert.deepEqual(
      result.problems.map((p) => p.kind),
      [kind],
      `${kind}: ${JSON.stringify(result.problems)}`,
    );
  }
  const disagree = checkWatches(writes(), [
    watcher([put(2, 'a'), put(4, 'a'), { revision: 8, key: 'a', type: 'delete' }]),
    watcher([put(2, 'a'), put(4, 'a'), put(8, 'a', 'a3')], { watcher: 'w2' }),
  ]);
  assert.deepEqual(
    disagree.problems.map((p) => p.kind),
    ['disagreement'],
  );
});

test('watches: generated histories with their revisions pass, and a dropped event is a gap', () => {
  const { ops } = genLinearizable(5, {
    ops: 500,
    processes: 6,
    keys: 3,
    valuesMax: 0,
    infoRate: 0.05,
    readRate: 0.3,
    casRate: 0.2,
    durationMsMax: 20,
    gapMsMax: 5,
  });
  // A perfect watcher per key: every acknowledged write in revision order.
  const logs: WatcherLog[] = ['k0', 'k1', 'k2'].map((key) => ({
    watcher: `watch-${key}`,
    keys: [key],
    startRevision: 1,
    events: ops
      .filter((op) => op.key === key && op.revision !== undefined)
      .sort((a, b) => a.revision! - b.revision!)
      .map((op) => put(op.revision!, key, op.input as Value)),
  }));
  assert.equal(checkWatches(ops, logs).verdict, 'ok');
  const events = [...logs[1]!.events];
  events.splice(10, 1);
  const result = checkWatches(ops, [{ ...logs[1]!, events }]);
  assert.deepEqual(
    result.problems.map((p) => [p.kind, p.revision]),
    [['gap', logs[1]!.events[10]!.revision]],
  );
});

// --- leases ---------------------------------------------------------------------------------------

test('leases: a key may vanish only after its TTL since the last refresh', () => {
  const base = { key: 'l', leaseId: 7, ttlMs: 1000, grantedMs: 100, keepAliveMs: [] as number[] };
  const ok = checkLeases([
    { ...base, missingObservedMs: 1100 }, // exactly at expiry
    { ...base, keepAliveMs: [500, 900], missingObservedMs: 1950 }, // 900 + 1000 = 1900
    { ...base, keepAliveMs: [500, 5000], missingObservedMs: 1600 }, // the later keep-alive came after
    { ...base }, // never missing
  ]);
  assert.equal(ok.verdict, 'ok');
  assert.equal(ok.neverMissing, 1);

  const early = checkLeases([
    { ...base, missingObservedMs: 1099 },
    { ...base, keepAliveMs: [500, 900], missingObservedMs: 1800 },
  ]);
  assert.equal(early.verdict, 'violation');
  assert.deepEqual(
    early.problems.map((p) => [p.expiresNotBeforeMs, p.missingObservedMs]),
    [
      [1100, 1099],
      [1900, 1800],
    ],
  );
  assert.match(early.problems[1]!.message, /100 ms before the lease could expire/);
  const tolerant = checkLeases([{ ...base, missingObservedMs: 1099 }], { toleranceMs: 5 });
  assert.equal(tolerant.verdict, 'ok');
});

// --- availability ---------------------------------------------------------------------------------

test('availability: share of ok operations and the longest window without a successful write', () => {
  const ops = build([
    w(0, 'x', 1, 0, 10),
    r(1, 'x', 1, 0, 5),
    w(0, 'x', 2, 10, 20, 'fail'),
    cas(2, 'x', 1, 3, 15, 0, 'info'),
    w(0, 'x', 3, 20, 100),
    r(1, 'x', 3, 110, 130),
  ]);
  const a = checkAvailability(ops);
  assert.deepEqual([a.opsTotal, a.opsOk, a.opsFail, a.opsInfo], [6, 4, 1, 1]);
  assert.equal(a.okShare, 4 / 6);
  assert.deepEqual(a.byFunction, {
    read: { total: 2, ok: 2 },
    write: { total: 3, ok: 2 },
    cas: { total: 1, ok: 0 },
  });
  assert.deepEqual(a.longestWriteGap, { fromMs: 10, toMs: 100, durationMs: 90 });
  assert.deepEqual(checkAvailability(ops, { fromMs: 50, toMs: 200 }).longestWriteGap, {
    fromMs: 100,
    toMs: 200,
    durationMs: 100,
  });
  const empty = checkAvailability([]);
  assert.equal(empty.okShare, 1);
  assert.equal(empty.longestWriteGap.durationMs, 0);
});
