/**
 * The nemesis schedule: the same seed gives the same plan; every fault targets a minority, faults
 * never overlap, and none lasts past the fault phase (only faults a majority survives).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  FAULT_KINDS,
  type FaultKind,
  minorityMax,
  PLAN_WARMUP_MS,
  parseFaultKinds,
  planFaults,
} from '../../src/chaos/plan.js';

describe('planFaults', () => {
  test('the same seed gives the same plan; another seed another plan', () => {
    const options = { voters: 5, durationMs: 120_000, kinds: FAULT_KINDS };
    const a = planFaults({ seed: 42, ...options });
    const b = planFaults({ seed: 42, ...options });
    const c = planFaults({ seed: 43, ...options });
    assert.ok(a.length > 5, `a 2-minute plan has several faults, got ${a.length}`);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  test('minority targets, no overlap, inside the fault phase, only the asked kinds', () => {
    for (let seed = 0; seed < 200; seed++) {
      const voters = [3, 5, 7][seed % 3]!;
      const kinds: FaultKind[] = seed % 2 === 0 ? ['kill', 'pause'] : [...FAULT_KINDS];
      const durationMs = 5_000 + (seed % 10) * 7_000;
      const plan = planFaults({ seed, voters, durationMs, kinds });
      let freeFromMs = PLAN_WARMUP_MS;
      for (const [i, step] of plan.entries()) {
        assert.equal(step.index, i);
        assert.ok(kinds.includes(step.kind), `${step.kind} was not asked for`);
        assert.ok(step.targets.length >= 1 && step.targets.length <= minorityMax(voters));
        assert.equal(new Set(step.targets).size, step.targets.length, 'distinct targets');
        for (const t of step.targets) assert.ok(t >= 0 && t < voters);
        assert.ok(step.atMs >= freeFromMs, `step ${i} starts before the previous one ended`);
        assert.ok(step.atMs + step.durationMs <= durationMs, `step ${i} lasts past the phase`);
        freeFromMs = step.atMs + step.durationMs;
        if (step.kind === 'slow') {
          assert.ok(step.delayMs !== undefined && step.dropRate !== undefined);
          assert.ok(step.dropRate >= 0 && step.dropRate < 1);
        }
      }
    }
  });

  test('nothing to fault: one voter, no kinds, or no time', () => {
    assert.deepEqual(
      planFaults({ seed: 1, voters: 1, durationMs: 60_000, kinds: FAULT_KINDS }),
      [],
    );
    assert.deepEqual(planFaults({ seed: 1, voters: 3, durationMs: 60_000, kinds: [] }), []);
    assert.deepEqual(planFaults({ seed: 1, voters: 3, durationMs: 500, kinds: FAULT_KINDS }), []);
  });

  test('fault kinds parse, unknown ones are refused by name', () => {
    assert.deepEqual(parseFaultKinds('kill, pause,kill'), ['kill', 'pause']);
    assert.deepEqual(parseFaultKinds('none'), []);
    assert.deepEqual(parseFaultKinds('kill,disk'), ['kill', 'disk']);
    assert.throws(() => parseFaultKinds('kill,flood'), /unknown fault kind 'flood'/);
  });
});
