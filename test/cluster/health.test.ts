import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type DetectorLimits,
  FailureDetector,
  healthRecords,
  type Observation,
  quorumHeard,
} from '../../src/cluster/health.js';
import { MemberRegistry } from '../../src/cluster/registry.js';

const LIMITS: DetectorLimits = { silentAfterMs: 1_000, lagEntriesMax: 100, stabilityMs: 5_000 };
const COMMIT = 1_000;

/** Feeds one member's observations, one per entry of `heard` (ms -> heard then or not). */
function run(detector: FailureDetector, ticks: [nowMs: number, heard: boolean, match?: number][]) {
  let lastHeardMs: number | null = null;
  const states: string[] = [];
  for (const [nowMs, heard, match] of ticks) {
    if (heard) lastHeardMs = nowMs;
    const obs: Observation = { id: 2, lastHeardMs, match: match ?? COMMIT };
    detector.observe(nowMs, COMMIT, [obs]);
    const h = detector.get(2)!;
    states.push(`${h.state}@${h.sinceMs}`);
  }
  return states;
}

test('a member heard recently and caught up is healthy; one far behind is lagging', () => {
  const d = new FailureDetector(LIMITS);
  assert.deepEqual(run(d, [[0, true]]), ['healthy@0']);
  const e = new FailureDetector(LIMITS);
  assert.deepEqual(run(e, [[0, true, COMMIT - 500]]), ['lagging@0']);
});

test('a silent member is unreachable since it was last heard, at once', () => {
  const d = new FailureDetector(LIMITS);
  assert.deepEqual(
    run(d, [
      [0, true],
      [500, false],
      [1_500, false],
      [9_000, false],
    ]),
    ['healthy@0', 'healthy@0', 'unreachable@0', 'unreachable@0'],
  );
});

test('a member is trusted again only after stabilityMs of unbroken good news', () => {
  const d = new FailureDetector(LIMITS);
  const states = run(d, [
    [0, true],
    [2_000, false], // silent: unreachable since 0
    [3_000, true], // heard again: not yet trusted
    [7_000, true],
    [8_000, true], // 5 s of good news since 3 s: trusted
  ]);
  assert.deepEqual(states, [
    'healthy@0',
    'unreachable@0',
    'unreachable@0',
    'unreachable@0',
    'healthy@8000',
  ]);
});

test('a flapping member stays unreachable since it first went silent', () => {
  const d = new FailureDetector(LIMITS);
  const ticks: [number, boolean][] = [[0, true]];
  // Heard for 2 s, silent for 2 s, over and over: never 5 s of good news.
  for (let t = 1_000; t <= 40_000; t += 1_000) ticks.push([t, Math.floor(t / 2_000) % 2 === 0]);
  const states = run(d, ticks);
  // Last heard at 1 s before the first silence: that is when it went silent, for good.
  assert.deepEqual(new Set(states.slice(3)), new Set(['unreachable@1000']));
});

test('with the trust-flapping bug the flapping member is trusted each time it is heard', () => {
  const d = new FailureDetector({ ...LIMITS, bugs: new Set(['trust-flapping']) });
  const ticks: [number, boolean][] = [[0, true]];
  for (let t = 1_000; t <= 10_000; t += 1_000) ticks.push([t, Math.floor(t / 2_000) % 2 === 0]);
  assert.ok(run(d, ticks).some((s) => s.startsWith('healthy@') && s !== 'healthy@0'));
});

test('a lagging member that catches up is trusted after stabilityMs, and worse news is immediate', () => {
  const d = new FailureDetector(LIMITS);
  const states = run(d, [
    [0, true, 0],
    [1_000, true, COMMIT],
    [6_000, true, COMMIT],
    [6_500, false, COMMIT],
    [7_600, false, COMMIT],
  ]);
  assert.deepEqual(states, [
    'lagging@0',
    'lagging@0',
    'healthy@6000',
    'healthy@6000',
    'unreachable@6000',
  ]);
});

test('a new leader continues the recorded clocks, and records only transitions', () => {
  const r = MemberRegistry.bootstrap([
    { id: 1, name: 'n1', peerUrls: [], clientUrls: [] },
    { id: 2, name: 'n2', peerUrls: [], clientUrls: [] },
  ]);
  r.applyCommand({ kind: 'record-health', id: 2, health: 'unreachable', sinceMs: 4_000 });
  const d = new FailureDetector(LIMITS);
  d.seed(r.all(), 10_000);
  d.observe(10_000, COMMIT, [
    { id: 1, lastHeardMs: 10_000, match: COMMIT },
    { id: 2, lastHeardMs: null, match: 0 },
  ]);
  // Inherited: a prior until this leader finds n2 silent itself (test/cluster/new-leader.test.ts).
  assert.deepEqual(d.get(2), {
    state: 'unreachable',
    sinceMs: 4_000,
    betterSinceMs: null,
    inherited: true,
  });
  assert.deepEqual(healthRecords(r.all(), d.view()), []);
  d.observe(10_500, COMMIT, [{ id: 1, lastHeardMs: 10_500, match: COMMIT }]);
  assert.equal(d.get(2), undefined, 'a member no longer observed is forgotten');
});

test('quorumHeard: a quorum of voters heard within the window, the leader counting itself', () => {
  const WINDOW_MS = 1_000;
  const NOW_MS = 10_000;
  const heard = (entries: [number, number][]) => new Map(entries);
  const config = (voters: number[], votersOutgoing: number[] = []) => ({ voters, votersOutgoing });
  const q = (c: ReturnType<typeof config>, h: Map<number, number>) =>
    quorumHeard(c, 1, h, NOW_MS, WINDOW_MS);
  // n1 leads: n2 heard exactly a window ago still counts, a millisecond more does not.
  assert.equal(q(config([1, 2, 3]), heard([[2, NOW_MS - WINDOW_MS]])), true);
  assert.equal(q(config([1, 2, 3]), heard([[2, NOW_MS - WINDOW_MS - 1]])), false);
  assert.equal(q(config([1, 2, 3]), heard([])), false, 'the leader alone is no quorum of 3');
  assert.equal(q(config([1]), heard([])), true, 'a single voter is its own quorum');
  assert.equal(q(config([]), heard([])), true, 'an empty half defers (raft quorum math)');
  // Joint: both halves. {1,2,3} heard through n2; {1,4,5} only through n1.
  const h = heard([
    [2, NOW_MS],
    [4, NOW_MS - 5 * WINDOW_MS],
  ]);
  assert.equal(q(config([1, 2, 3], [1, 4, 5]), h), false);
  assert.equal(q(config([1, 2, 3], [1, 2, 5]), h), true);
  // A member heard but not a voter does not make a quorum.
  assert.equal(q(config([1, 3, 5]), heard([[2, NOW_MS]])), false);
});

test('a member added after the leader began listening is silent only since it appeared (etcd: add, then start)', () => {
  const r = MemberRegistry.bootstrap([{ id: 1, name: 'n1', peerUrls: [], clientUrls: [] }]);
  const d = new FailureDetector(LIMITS);
  d.seed(r.all(), 1_000);
  d.observe(1_000, COMMIT, [{ id: 1, lastHeardMs: 1_000, match: COMMIT }]);
  // n2 is added at 60 s and never heard: its silence starts at 60 s, not at 1 s.
  const at = (nowMs: number) => {
    d.observe(nowMs, COMMIT, [
      { id: 1, lastHeardMs: nowMs, match: COMMIT },
      { id: 2, lastHeardMs: null, match: 0 },
    ]);
    const h = d.get(2)!;
    return `${h.state}@${h.sinceMs}`;
  };
  assert.notEqual(at(60_000).split('@')[0], 'unreachable', 'not silent the moment it appears');
  assert.equal(at(61_500), 'unreachable@60000');
  assert.equal(at(70_000), 'unreachable@60000');
});

test('a member that just appeared is not healthy until heard for stabilityMs, even if Raft calls it active', () => {
  const r = MemberRegistry.bootstrap([{ id: 1, name: 'n1', peerUrls: [], clientUrls: [] }]);
  const d = new FailureDetector(LIMITS);
  d.seed(r.all(), 1_000);
  // etcd's member add at 60 s: Raft counts a new peer recently active (heard "now"), and the
  // young log makes its empty one look caught up: neither proves the process runs.
  const at = (nowMs: number) => {
    d.observe(nowMs, COMMIT, [
      { id: 1, lastHeardMs: nowMs, match: COMMIT },
      { id: 2, lastHeardMs: nowMs, match: COMMIT },
    ]);
    return d.get(2)!.state;
  };
  assert.equal(at(60_000), 'lagging');
  assert.equal(at(60_000 + LIMITS.stabilityMs - 1), 'lagging');
  assert.equal(at(60_000 + LIMITS.stabilityMs), 'healthy');
});
