/**
 * A new leader's failure detector and planner (issue 5): what a leader knows of the time before
 * it began listening. As a follower it heard only the old leader, so its last-heard times of the
 * other members prove no silence; and the registry's recorded `unreachable` may be stale (the old
 * leader may have lost office before recording a recovery). Each test fails on the rules before
 * this distinction: the follower-era times made a new leader replace a voter 40 ms after its
 * election (simulator seed 392), and a stale record demoted a voter it could hear.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type DetectorLimits,
  FailureDetector,
  type MemberHealth,
} from '../../src/cluster/health.js';
import { failedVoters, planRedundancy, type RedundancyView } from '../../src/cluster/policy.js';
import { MemberRegistry } from '../../src/cluster/registry.js';
import { COMMIT, policy, standby, summary, view, voter } from './fixture.js';

const LIMITS: DetectorLimits = { silentAfterMs: 1_000, lagEntriesMax: 100, stabilityMs: 5_000 };
const POLICY = policy(); // replaceAfter 10 s, silentAfter 1 s, stability 5 s
/** The new leader (n1) takes office at 20 s. */
const ELECTED_MS = 20_000;

/** A two-member registry in which n2's recorded health is `health` since `sinceMs`. */
function registry(health: 'healthy' | 'unreachable', sinceMs: number): MemberRegistry {
  const r = MemberRegistry.bootstrap([
    { id: 1, name: 'n1', peerUrls: [], clientUrls: [] },
    { id: 2, name: 'n2', peerUrls: [], clientUrls: [] },
  ]);
  r.applyCommand({ kind: 'record-health', id: 2, health, sinceMs });
  return r;
}

/** Feeds the detector n2's last-heard time at each `[nowMs, lastHeardMs]`; returns n2's health. */
function feed(d: FailureDetector, steps: [nowMs: number, lastHeardMs: number | null][]) {
  const out: MemberHealth[] = [];
  for (const [nowMs, lastHeardMs] of steps) {
    d.observe(nowMs, COMMIT, [
      { id: 1, lastHeardMs: nowMs, match: COMMIT },
      { id: 2, lastHeardMs, match: COMMIT },
    ]);
    out.push(d.get(2)!);
  }
  return out;
}

function brief(h: MemberHealth): string {
  return `${h.state}@${h.sinceMs}${h.inherited === true ? ' inherited' : ''}`;
}

/** n2 (a voter of {1,2,3}) as the detector sees it, in a view a planner can act on. */
function viewWith(h: MemberHealth, extra = [standby(4, 'hot')]): RedundancyView {
  const v = view([voter(1), voter(2), voter(3), ...extra]);
  return { ...v, health: new Map([...v.health, [2, h]]) };
}

test('a new leader counts silence from when it began listening, not from its follower days', () => {
  const d = new FailureDetector(LIMITS);
  d.seed(registry('healthy', 0).all(), ELECTED_MS);
  // n2 last spoke to this member 19.8 s ago (a vote request, when it was a follower).
  const states = feed(d, [
    [ELECTED_MS, 200],
    [ELECTED_MS + 900, 200],
    [ELECTED_MS + 1_100, 200],
  ]).map(brief);
  assert.deepEqual(states, ['healthy@0', 'healthy@0', `unreachable@${ELECTED_MS}`]);
  const h = d.get(2)!;
  assert.deepEqual(failedVoters(viewWith(h), POLICY, ELECTED_MS + 1_100), []);
  assert.deepEqual(failedVoters(viewWith(h), POLICY, ELECTED_MS + 10_000), [2]);
});

test('a recorded silence is confirmed by the new leader before anyone is replaced; the clock holds', () => {
  const d = new FailureDetector(LIMITS);
  d.seed(registry('unreachable', 4_000).all(), ELECTED_MS);
  const [first, later] = feed(d, [
    [ELECTED_MS, null],
    [ELECTED_MS + 1_100, null],
  ]);
  assert.equal(brief(first!), 'unreachable@4000 inherited');
  // 16 s past the recorded silence, but this leader has not found n2 silent itself yet.
  assert.deepEqual(failedVoters(viewWith(first!), POLICY, ELECTED_MS), []);
  assert.equal(summary(planRedundancy(viewWith(first!), POLICY, ELECTED_MS)), 'nothing');
  // Silent through a whole window of its own: confirmed, and the old leader's clock continues.
  assert.equal(brief(later!), 'unreachable@4000');
  assert.deepEqual(failedVoters(viewWith(later!), POLICY, ELECTED_MS + 1_100), [2]);
  assert.equal(
    summary(planRedundancy(viewWith(later!), POLICY, ELECTED_MS + 1_100)),
    'replace: AddNode(4) AddLearnerNode(2) joint',
  );
});

test('a stale recorded silence: a voter the new leader hears is never replaced, and trusted after stability', () => {
  const d = new FailureDetector(LIMITS);
  d.seed(registry('unreachable', 0).all(), ELECTED_MS);
  const heard: [number, number][] = [];
  for (let t = ELECTED_MS; t <= ELECTED_MS + 6_000; t += 250) heard.push([t, t]);
  const states = feed(d, heard);
  for (const [i, h] of states.entries()) {
    assert.deepEqual(failedVoters(viewWith(h), POLICY, heard[i]![0]), [], brief(h));
  }
  // Not trusted before stabilityMs of good news (hysteresis as for anyone), then healthy.
  assert.equal(brief(states[4]!), 'unreachable@0 inherited');
  assert.equal(states.at(-1)!.state, 'healthy');
  assert.equal(states.at(-1)!.inherited, undefined);
});

test('a stale recorded silence, heard then silent again: the clock starts at the new silence', () => {
  const d = new FailureDetector(LIMITS);
  d.seed(registry('unreachable', 0).all(), ELECTED_MS);
  const states = feed(d, [
    [ELECTED_MS, ELECTED_MS],
    [ELECTED_MS + 500, ELECTED_MS + 500],
    [ELECTED_MS + 2_000, ELECTED_MS + 500],
  ]).map(brief);
  assert.deepEqual(states.slice(1), ['unreachable@0 inherited', `unreachable@${ELECTED_MS + 500}`]);
});

test('a new leader keeps a standby staged while it confirms a recorded failure', () => {
  const staged = standby(5, 'warm', { placement: 'learner', lag: 0 });
  const inherited: MemberHealth = {
    state: 'unreachable',
    sinceMs: 0,
    betterSinceMs: null,
    inherited: true,
  };
  // Confirming: neither replaced nor the staged standby sent back outside.
  assert.equal(
    summary(planRedundancy(viewWith(inherited, [staged]), POLICY, ELECTED_MS)),
    'nothing',
  );
  // Confirmed: the staged standby replaces n2.
  const confirmed: MemberHealth = { state: 'unreachable', sinceMs: 0, betterSinceMs: null };
  assert.equal(
    summary(planRedundancy(viewWith(confirmed, [staged]), POLICY, ELECTED_MS)),
    'replace: AddNode(5) AddLearnerNode(2) joint',
  );
  // No failure recorded at all: the staged standby goes back outside (rule 3).
  const healthy: MemberHealth = { state: 'healthy', sinceMs: 0, betterSinceMs: null };
  assert.equal(
    summary(planRedundancy(viewWith(healthy, [staged]), POLICY, ELECTED_MS)),
    'unstage: RemoveNode(5)',
  );
});
