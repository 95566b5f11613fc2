/**
 * etcd's documented workflow, `etcdctl member add` of a voter and then starting it (issue 13
 * item 3), through the model cluster of model.ts (the real registry, detector, planner and
 * raft confchange): the added member gets replaceAfter from when it was added, a running one is
 * respected, and a replacement's surplus is trimmed back to `voters` with the standbys restored.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PolicyBugName } from '../../src/cluster/health.js';
import { type Addition, ClusterModel, type ModelSpec, TICK_MS } from './model.js';

/** modelPolicy: replaceAfter 20 ticks, silentAfter 3, stability 8. */
const REPLACE_AFTER_TICKS = 20;
const ADDED_AT = 10;

function run(addition: Omit<Addition, 'id' | 'atTick'>, bugs: PolicyBugName[] = []) {
  const spec: ModelSpec = {
    target: 3,
    members: [
      { id: 1, role: 'voter', mode: 'hot', zone: 'a' },
      { id: 2, role: 'voter', mode: 'hot', zone: 'a' },
      { id: 3, role: 'voter', mode: 'hot', zone: 'a' },
      { id: 4, role: 'standby', mode: 'hot', zone: 'a' },
    ],
    outages: [],
    flappers: [],
    ticks: 120,
    quietTicks: 60,
    dead: null,
    applyDelays: [1, 2],
    bugs,
    additions: [{ id: 5, atTick: ADDED_AT, ...addition }],
  };
  const model = new ClusterModel(spec).run();
  const steps = model.actions
    .filter((a) => a.action.kind === 'conf-change')
    .map((a) => ({ tick: a.tick, step: a.action.kind === 'conf-change' ? a.action.step : '' }));
  const roles = model.registry
    .all()
    .map((m) => `${m.id}:${m.role}`)
    .join(' ');
  return { model, steps, roles, voters: [...model.voters()].sort() };
}

function noViolations(model: ClusterModel): void {
  assert.deepEqual(
    model.violations.map((v) => `${v.property} at ${v.tick}: ${v.detail}`),
    [],
  );
}

test('member add, started within replaceAfter: the operator gets its fourth voter, nothing is replaced', () => {
  const r = run({ startTick: ADDED_AT + 5, removeTick: null });
  noViolations(r.model);
  assert.deepEqual(r.steps, []);
  assert.deepEqual(r.voters, [1, 2, 3, 5]);
  assert.equal(r.roles, '1:voter 2:voter 3:voter 4:standby 5:voter');
});

test('member add, never started: replaced only replaceAfter after it was added, then the surplus is trimmed', () => {
  const r = run({ startTick: null, removeTick: null });
  noViolations(r.model);
  const replace = r.steps.find((s) => s.step === 'replace');
  assert.ok(replace !== undefined, `no replacement: ${JSON.stringify(r.steps)}`);
  // Silence counted from the addition (it was never heard), not from the leader's start.
  assert.ok(
    replace.tick >= ADDED_AT + REPLACE_AFTER_TICKS,
    `replaced at tick ${replace.tick}, ${(replace.tick - ADDED_AT) * TICK_MS} ms after it was added`,
  );
  assert.deepEqual(
    r.steps.map((s) => s.step),
    ['replace', 'trim'],
  );
  assert.deepEqual(r.voters, [1, 2, 3]);
  assert.equal(r.roles, '1:voter 2:voter 3:voter 4:standby 5:standby');
});

test('member add, started after its replacement: three voters, and both it and the old standby are standbys', () => {
  const r = run({ startTick: ADDED_AT + REPLACE_AFTER_TICKS + 15, removeTick: null });
  noViolations(r.model);
  assert.deepEqual(
    r.steps.map((s) => s.step),
    ['replace', 'trim'],
  );
  assert.deepEqual(r.voters, [1, 2, 3]);
  assert.equal(r.roles, '1:voter 2:voter 3:voter 4:standby 5:standby');
});

test('member add, then member remove after its replacement: back to three voters and the standby', () => {
  const r = run({ startTick: null, removeTick: ADDED_AT + REPLACE_AFTER_TICKS + 15 });
  noViolations(r.model);
  assert.deepEqual(r.voters, [1, 2, 3]);
  assert.equal(r.roles, '1:voter 2:voter 3:voter 4:standby');
});
