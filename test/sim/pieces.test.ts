/**
 * Unit tests of the simulator's pieces that need no Raft: the virtual clock and event queue, the
 * network, the disk, the trace hash, the state machine image, and the checker's invariants.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryStorage } from '../../src/raft/storage.js';
import { type Entry, EntryType } from '../../src/raft/types.js';
import { Checker, InvariantViolation } from '../../src/sim/checker.js';
import { SimDisk } from '../../src/sim/disk.js';
import { type DropReason, type NetworkParams, SimNetwork } from '../../src/sim/network.js';
import { deriveParams, formatParams } from '../../src/sim/params.js';
import { EventQueue } from '../../src/sim/queue.js';
import { AppliedLog, decodeImage } from '../../src/sim/statemachine.js';
import { Trace } from '../../src/sim/trace.js';
import { Prng } from '../../src/util/prng.js';

test('the event queue runs events in time order, ties in insertion order', () => {
  const q = new EventQueue();
  const seen: string[] = [];
  q.at(5, () => seen.push('b5'));
  q.at(1, () => seen.push('a1'));
  q.at(5, () => seen.push('c5'));
  q.at(3, () => {
    seen.push('x3');
    q.after(2, () => seen.push('d5')); // same time as b5/c5 but scheduled later
    q.after(0, () => seen.push('y3'));
  });
  while (q.runNext()) {}
  assert.deepEqual(seen, ['a1', 'x3', 'y3', 'b5', 'c5', 'd5']);
  assert.equal(q.nowMs, 5);
  assert.equal(q.runNext(), false);
});

test('the event queue refuses events in the past', () => {
  const q = new EventQueue();
  q.at(10, () => {});
  q.runNext();
  assert.throws(() => q.at(9, () => {}), /before now/);
});

test('the event queue stays ordered under random load', () => {
  const q = new EventQueue();
  const rng = new Prng(3);
  const times: number[] = [];
  for (let i = 0; i < 5000; i++) q.at(rng.int(1000), () => times.push(q.nowMs));
  while (q.runNext()) {}
  assert.equal(times.length, 5000);
  for (let i = 1; i < times.length; i++) assert.ok(times[i - 1]! <= times[i]!);
});

const QUIET: NetworkParams = {
  latencyBaseMs: 5,
  latencyTailMeanMs: 0,
  lossRate: 0,
  duplicateRate: 0,
  reorderRate: 0,
  reorderDelayMsMax: 0,
};

function harness(params: NetworkParams, seed = 1, down: readonly number[] = []) {
  const q = new EventQueue();
  const delivered: [number, number, number, number][] = [];
  const dropped: [number, number, number, DropReason][] = [];
  const net = new SimNetwork<number>(q, new Prng(seed), params, {
    deliver: (from, to, payload) => {
      if (down.includes(to)) return false;
      delivered.push([from, to, payload, q.nowMs]);
      return true;
    },
    dropped: (from, to, payload, reason) => dropped.push([from, to, payload, reason]),
  });
  return { q, net, delivered, dropped };
}

test('the network delivers after the latency, to the addressee', () => {
  const { q, net, delivered, dropped } = harness(QUIET);
  net.send(1, 2, 42);
  while (q.runNext()) {}
  assert.deepEqual(delivered, [[1, 2, 42, 5]]);
  assert.equal(dropped.length, 0);
  assert.equal(net.sentCount, 1);
  assert.equal(net.deliveredCount, 1);
});

test('a symmetric split cuts both ways, an asymmetric one only one way, heal restores', () => {
  const { q, net, delivered, dropped } = harness(QUIET);
  net.split([1], [2, 3], true);
  net.send(1, 2, 1);
  net.send(3, 1, 2);
  net.send(2, 3, 3);
  while (q.runNext()) {}
  assert.deepEqual(
    delivered.map((d) => d[2]),
    [3],
  );
  assert.deepEqual(
    dropped.map((d) => [d[2], d[3]]),
    [
      [1, 'partitioned'],
      [2, 'partitioned'],
    ],
  );
  net.healAll();
  net.split([1], [2], false);
  net.send(1, 2, 4);
  net.send(2, 1, 5);
  while (q.runNext()) {}
  assert.deepEqual(
    delivered.map((d) => d[2]),
    [3, 5],
  );
  net.healAll();
  assert.equal(net.cutLinksCount, 0);
});

test('a partition that starts while a message is in flight drops it', () => {
  const { q, net, delivered, dropped } = harness(QUIET);
  net.send(1, 2, 7);
  q.at(2, () => net.isolate(2, [1, 2, 3]));
  while (q.runNext()) {}
  assert.equal(delivered.length, 0);
  assert.deepEqual(dropped[0]!.slice(2), [7, 'partitioned']);
});

test('a message to a down node is dropped as down', () => {
  const { q, net, dropped } = harness(QUIET, 1, [2]);
  net.send(1, 2, 9);
  while (q.runNext()) {}
  assert.deepEqual(dropped[0]!.slice(2), [9, 'down']);
});

test('loss, duplication and reordering happen at about their rates', () => {
  const params = {
    ...QUIET,
    latencyTailMeanMs: 3,
    lossRate: 0.2,
    duplicateRate: 0.1,
    reorderRate: 0.3,
    reorderDelayMsMax: 50,
  };
  const { q, net, delivered, dropped } = harness(params, 9);
  const n = 10_000;
  for (let i = 0; i < n; i++) net.send(1, 2, i);
  while (q.runNext()) {}
  const copies = delivered.length + dropped.length;
  assert.ok(copies > n * 1.07 && copies < n * 1.13, `copies ${copies}`);
  const lossRate = dropped.length / copies;
  assert.ok(lossRate > 0.18 && lossRate < 0.22, `loss ${lossRate}`);
  let inversions = 0;
  for (let i = 1; i < delivered.length; i++)
    if (delivered[i]![2] < delivered[i - 1]![2]) inversions++;
  assert.ok(inversions > n * 0.1, `only ${inversions} reorderings`);
  for (const d of delivered) assert.ok(d[3] >= 5, 'faster than the base latency');
});

test('the network is deterministic for a seed', () => {
  const run = (seed: number): string => {
    const params = {
      ...QUIET,
      latencyTailMeanMs: 3,
      lossRate: 0.1,
      duplicateRate: 0.1,
      reorderRate: 0.1,
      reorderDelayMsMax: 20,
    };
    const { q, net, delivered } = harness(params, seed);
    for (let i = 0; i < 200; i++) net.send(1 + (i % 3), 1 + ((i + 1) % 3), i);
    while (q.runNext()) {}
    return JSON.stringify(delivered);
  };
  assert.equal(run(5), run(5));
  assert.notEqual(run(5), run(6));
});

test('disk writes complete in order after their latency; a crash loses those in flight', () => {
  const q = new EventQueue();
  const disk = new SimDisk(q, new Prng(1), { writeLatencyMsMin: 1, writeLatencyMsMax: 10 });
  const durable: number[] = [];
  const done: number[] = [];
  for (let i = 0; i < 20; i++)
    disk.write(
      () => durable.push(i),
      () => done.push(q.nowMs),
    );
  assert.equal(disk.writesPending, 20);
  q.at(3, () => disk.crash());
  while (q.runNext()) {}
  // FIFO: what survived is a prefix, completed in time order.
  assert.deepEqual(durable, [...durable.keys()]);
  assert.ok(durable.length < 20, 'the crash lost nothing');
  for (let i = 1; i < done.length; i++) assert.ok(done[i - 1]! <= done[i]!);
  assert.equal(disk.writesLost, 20 - durable.length);
  assert.equal(disk.writesPending, 0);
  disk.write(
    () => durable.push(99),
    () => {},
  );
  while (q.runNext()) {}
  assert.equal(durable.at(-1), 99, 'a write after the crash completes');
});

test('the trace hash depends on every field and on order', () => {
  const hash = (events: number[][]): string => {
    const t = new Trace({ readable: false });
    for (const e of events) t.mix(e[0]!, ...e.slice(1));
    return t.hash();
  };
  const a = hash([
    [1, 2, 3],
    [4, 5.5, 6],
  ]);
  assert.equal(
    a,
    hash([
      [1, 2, 3],
      [4, 5.5, 6],
    ]),
  );
  assert.notEqual(
    a,
    hash([
      [4, 5.5, 6],
      [1, 2, 3],
    ]),
  );
  assert.notEqual(
    a,
    hash([
      [1, 2, 3],
      [4, 5.25, 6],
    ]),
  );
  const t = new Trace({ readable: false });
  assert.equal(t.enabled, false);
  assert.equal(t.lines, null);
});

function entry(index: number, term: number, byte = index): Entry {
  return { index, term, type: EntryType.Normal, data: new Uint8Array([byte]) };
}

test('the state machine image round-trips, and chains differ with history', () => {
  const a = new AppliedLog();
  const b = new AppliedLog();
  a.apply(entry(1, 1));
  a.apply(entry(2, 1));
  b.apply(entry(1, 1));
  b.apply(entry(2, 2));
  assert.notEqual(a.chain, b.chain);
  const c = new AppliedLog();
  c.restore(2, a.image(), a.confState);
  assert.equal(c.chain, a.chain);
  assert.deepEqual(decodeImage(a.image(), 2), { index: 2, chain: a.chain });
  assert.throws(() => c.apply(entry(4, 1)), /applies entry 4/);
});

function persisted(storage: MemoryStorage, entries: Entry[], commit: number, term = 1) {
  storage.append(entries);
  storage.setHardState({ term, vote: 0, commit });
  return { entries, commit };
}

test('checker: two leaders in one term is an election-safety violation', () => {
  const c = new Checker();
  c.observeLeader(1, 3);
  c.observeLeader(1, 3);
  c.observeLeader(2, 4);
  assert.throws(
    () => c.observeLeader(2, 3),
    (e: unknown) => e instanceof InvariantViolation && e.invariant === 'election-safety',
  );
});

test('checker: log matching catches same (index, term) with different content or prefix', () => {
  const c = new Checker();
  const s1 = new MemoryStorage();
  const s2 = new MemoryStorage();
  const e1 = [entry(1, 1), entry(2, 2)];
  persisted(s1, e1, 0);
  c.onPersist(1, s1, null, e1, null, 2);
  const e2 = [entry(1, 1), entry(2, 2, 99)];
  persisted(s2, e2, 0);
  assert.throws(() => c.onPersist(2, s2, null, e2, null, 2), /log-matching/);
  const c2 = new Checker();
  const s3 = new MemoryStorage();
  const s4 = new MemoryStorage();
  persisted(s3, [entry(1, 1), entry(2, 3)], 0);
  c2.onPersist(3, s3, null, [entry(1, 1), entry(2, 3)], null, 3);
  persisted(s4, [entry(1, 2)], 0);
  c2.onPersist(4, s4, null, [entry(1, 2)], null, 3);
  persisted(s4, [entry(2, 3)], 0);
  assert.throws(() => c2.onPersist(4, s4, null, [entry(2, 3)], null, 3), /predecessor of term 2/);
});

test('checker: truncating a committed entry is a committed-stable violation', () => {
  const c = new Checker();
  const s1 = new MemoryStorage();
  persisted(s1, [entry(1, 1), entry(2, 1)], 2);
  c.onPersist(1, s1, null, [entry(1, 1), entry(2, 1)], 2, 1);
  assert.equal(c.committedMax, 2);
  // Node 2 knows entry 2 is committed: it must never lose it.
  const s2 = new MemoryStorage();
  persisted(s2, [entry(1, 1), entry(2, 1)], 2);
  c.onPersist(2, s2, null, [entry(1, 1), entry(2, 1)], 2, 1);
  assert.throws(
    () => c.beforeAppend(2, s2, [entry(2, 2, 7)]),
    (e: unknown) => e instanceof InvariantViolation && e.invariant === 'committed-stable',
  );
  // A copy beyond a node's commit index may be replaced by a stale leader (seed 10573).
  const s6 = new MemoryStorage();
  persisted(s6, [entry(1, 1), entry(2, 1)], 1);
  c.onPersist(6, s6, null, [entry(1, 1), entry(2, 1)], 1, 1);
  c.beforeAppend(6, s6, [entry(2, 2, 7)]);
  // A lagging node may write a stale entry where it lacks the committed one.
  const s3 = new MemoryStorage();
  persisted(s3, [entry(1, 1)], 1);
  c.onPersist(3, s3, null, [entry(1, 1)], 1, 1);
  c.beforeAppend(3, s3, [entry(2, 2, 7)]);
  persisted(s3, [entry(2, 2, 7)], 1);
  c.onPersist(3, s3, null, [entry(2, 2, 7)], 1, 2);
  // But not at or below its own commit index.
  const s4 = new MemoryStorage();
  persisted(s4, [entry(1, 1), entry(2, 1)], 2);
  c.onPersist(4, s4, null, [entry(1, 1), entry(2, 1)], 2, 1);
  const s5 = new MemoryStorage();
  persisted(s5, [entry(1, 1), entry(2, 2, 7)], 2);
  assert.throws(() => c.onPersist(4, s5, null, [entry(2, 2, 7)], 2, 2), /committed-stable/);
});

test('checker: a node lacking the latest committed entry must not be electable', () => {
  const c = new Checker();
  const s = new MemoryStorage();
  persisted(s, [entry(1, 1), entry(2, 1)], 2);
  c.onPersist(1, s, null, [entry(1, 1), entry(2, 1)], 2, 1);
  const logs = new Map([
    [1, { index: 2, term: 1 }],
    [2, { index: 2, term: 1 }],
    [3, { index: 1, term: 1 }],
  ]);
  const log = (id: number) => logs.get(id) ?? null;
  // Node 3 (1@1) is behind nodes 1 and 2: fine.
  c.checkElectable(3, { index: 1, term: 1 }, false, [1, 2, 3], [], log);
  // Holding the entry: fine whatever its log.
  c.checkElectable(1, { index: 9, term: 9 }, true, [1, 2, 3], [], log);
  // A higher last term without entry 2 would win votes from 2 of 3 voters.
  assert.throws(
    () => c.checkElectable(3, { index: 1, term: 2 }, false, [1, 2, 3], [], log),
    /leader-completeness: node 3 lacks committed entry 2/,
  );
  // Joint: it must also win the outgoing majority.
  logs.set(4, { index: 5, term: 3 });
  logs.set(5, { index: 5, term: 3 });
  c.checkElectable(3, { index: 1, term: 2 }, false, [1, 2, 3], [3, 4, 5], log);
});

test('checker: a durable commit index never goes back', () => {
  const c = new Checker();
  const s = new MemoryStorage();
  persisted(s, [entry(1, 1), entry(2, 1)], 2);
  c.onPersist(1, s, null, [entry(1, 1), entry(2, 1)], 2, 1);
  s.setHardState({ term: 1, vote: 0, commit: 1 });
  assert.throws(() => c.onPersist(1, s, null, [], 1, 1), /went back/);
});

test('checker: a leader missing an entry committed in an earlier term violates completeness', () => {
  const c = new Checker();
  const s1 = new MemoryStorage();
  persisted(s1, [entry(1, 1), entry(2, 1)], 2);
  c.onPersist(1, s1, null, [entry(1, 1), entry(2, 1)], 2, 1);
  const s2 = new MemoryStorage();
  persisted(s2, [entry(1, 1)], 1);
  c.onPersist(2, s2, null, [entry(1, 1)], 1, 1);
  // Leader of term 1 itself: not required (committed in its own term).
  c.checkLeaderLog(2, 1, s2, []);
  assert.throws(() => c.checkLeaderLog(2, 2, s2, []), /leader-completeness/);
  // Holding it as an unstable entry is enough.
  c.checkLeaderLog(2, 2, s2, [entry(2, 1)]);
});

test('checker: applying a different or uncommitted entry violates state-machine safety', () => {
  const c = new Checker();
  const s = new MemoryStorage();
  persisted(s, [entry(1, 1)], 1);
  c.onPersist(1, s, null, [entry(1, 1)], 1, 1);
  const a = new AppliedLog();
  a.apply(entry(1, 1));
  c.onApply(1, entry(1, 1), a.chain);
  assert.throws(() => c.onApply(2, entry(2, 1), 5), /state-machine-safety/);
  assert.throws(() => c.onApply(2, entry(1, 1), a.chain + 1), /differs/);
});

test('checker: a read below an acknowledged write is not linearizable', () => {
  const c = new Checker();
  c.onAck(5);
  c.onReadServed(1, 1, 5, 5);
  assert.throws(() => c.onReadServed(1, 2, 4, 5), /linearizable-read/);
});

test('parameters are derived from the seed and printed', () => {
  const a = deriveParams(17);
  assert.deepEqual(formatParams(a), formatParams(deriveParams(17)));
  assert.notEqual(formatParams(a), formatParams(deriveParams(18)));
  assert.match(formatParams(a), /^seed=17 voters=[357] .*loss=/);
  assert.equal(deriveParams(17, { voters: 5 }).voters, 5);
  const voters = new Set<number>();
  for (let seed = 0; seed < 50; seed++) voters.add(deriveParams(seed).voters);
  assert.deepEqual([...voters].sort(), [3, 5, 7]);
});
