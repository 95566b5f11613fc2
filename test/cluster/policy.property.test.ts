/**
 * Property tests of the redundancy policy over random clusters and fault schedules, run in the
 * model of model.ts (real registry, detector, planner and raft confchange). Each injected policy
 * bug must be caught by the property it breaks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { StandbyMode } from '../../src/cluster/commands.js';
import type { PolicyBugName } from '../../src/cluster/health.js';
import {
  type Addition,
  ClusterModel,
  type Flapper,
  type MemberPlan,
  type ModelSpec,
  type Outage,
  type PropertyName,
  TRIM_ROUNDS_MAX,
} from './model.js';

const RUNS = Number(process.env.CLUSTER_PROPERTY_RUNS ?? 60);
const TICKS = 200;
const QUIET_TICKS = 240;

const arbMode = fc.constantFrom<StandbyMode>('hot', 'warm', 'cold');
const arbZone = fc.constantFrom('a', 'b');

/** A random cluster: target 3 or 5, maybe one voter short, 0-3 standbys, 0-1 replica. */
const arbMembers = fc
  .record({
    target: fc.constantFrom(3, 5),
    short: fc.boolean(),
    voterModes: fc.array(fc.tuple(arbMode, arbZone), { minLength: 5, maxLength: 5 }),
    standbys: fc.array(fc.tuple(arbMode, arbZone), { maxLength: 3 }),
    replica: fc.boolean(),
  })
  .map(({ target, short, voterModes, standbys, replica }) => {
    const voters = target - (short ? 1 : 0);
    const members: MemberPlan[] = [];
    for (let id = 1; id <= voters; id++) {
      const [mode, zone] = voterModes[id - 1]!;
      members.push({ id, role: 'voter', mode, zone });
    }
    for (const [mode, zone] of standbys) {
      members.push({ id: members.length + 1, role: 'standby', mode, zone });
    }
    if (replica) members.push({ id: members.length + 1, role: 'replica', mode: 'hot', zone: 'a' });
    return { target, members };
  });

function arbSpec(bugs: PolicyBugName[] = []): fc.Arbitrary<ModelSpec> {
  return arbMembers.chain(({ target, members }) => {
    const others = members.map((m) => m.id).filter((id) => id !== 1);
    const arbId = others.length > 0 ? fc.constantFrom(...others) : fc.constant(2);
    const outage: fc.Arbitrary<Outage> = fc
      .record({ id: arbId, fromTick: fc.nat(TICKS), length: fc.integer({ min: 1, max: 120 }) })
      .map(({ id, fromTick, length }) => ({ id, fromTick, toTick: fromTick + length }));
    // Looks up for less than stabilityMs (8 ticks): up at most 4 ticks, plus the 3 ticks of
    // silence the detector needs (silentAfterMs) to notice; then down long enough to notice.
    const flapper: fc.Arbitrary<Flapper> = fc.record({
      id: arbId,
      upTicks: fc.integer({ min: 1, max: 4 }),
      downTicks: fc.integer({ min: 4, max: 40 }),
      phase: fc.nat(50),
    });
    // etcd's member add of a voter (0-2 of them, close together), started in time, late or
    // never, maybe removed.
    const firstAddedId = members.length + 1;
    const addition = (id: number, baseTick: number): fc.Arbitrary<Addition> =>
      fc
        .record({
          offset: fc.nat(10),
          startAfter: fc.option(fc.integer({ min: 0, max: 60 }), { nil: null, freq: 2 }),
          removeAfter: fc.option(fc.integer({ min: 0, max: 80 }), { nil: null, freq: 3 }),
        })
        .map(({ offset, startAfter, removeAfter }) => {
          const atTick = baseTick + offset;
          return {
            id,
            atTick,
            startTick: startAfter === null ? null : atTick + startAfter,
            removeTick: removeAfter === null ? null : atTick + removeAfter,
          };
        });
    const additions = fc.nat(TICKS - 40).chain((baseTick) =>
      fc.oneof(
        { arbitrary: fc.constant<Addition[]>([]), weight: 2 },
        { arbitrary: fc.tuple(addition(firstAddedId, baseTick)), weight: 2 },
        {
          arbitrary: fc.tuple(
            addition(firstAddedId, baseTick),
            addition(firstAddedId + 1, baseTick),
          ),
          weight: 3,
        },
      ),
    );
    return fc.record({
      target: fc.constant(target),
      members: fc.constant(members),
      outages: fc.array(outage, { maxLength: 4 }),
      flappers: fc.uniqueArray(flapper, { maxLength: 2, selector: (f) => f.id }),
      ticks: fc.constant(TICKS),
      quietTicks: fc.constant(QUIET_TICKS),
      dead: fc.option(arbId, { nil: null }),
      applyDelays: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 }),
      bugs: fc.constant(bugs),
      additions,
    });
  });
}

function violations(spec: ModelSpec, property: PropertyName): string[] {
  const model = new ClusterModel(spec).run();
  return model.violations
    .filter((v) => v.property === property)
    .map((v) => `tick ${v.tick}: ${v.detail}`);
}

function holds(property: PropertyName, bugs: PolicyBugName[] = [], runs = RUNS): void {
  fc.assert(
    fc.property(arbSpec(bugs), (spec) => {
      assert.deepEqual(violations(spec, property), []);
    }),
    { numRuns: runs },
  );
}

test('(a) no planned change leaves fewer healthy voters than a quorum of the result', () => {
  holds('healthy-quorum');
});

test('(b) never a second membership change while one is pending', () => {
  holds('one-change-at-a-time');
});

test('(c) the factor is restored whenever a caught-up standby exists and a quorum is live', () => {
  holds('factor-restored');
});

test('(d) a member flapping faster than stabilityMs is never promoted nor replaced twice', () => {
  holds('no-flapping-churn');
});

test('a promoted standby is always healthy and caught up', () => {
  holds('promote-caught-up');
});

test('raft accepts every planned change', () => {
  holds('raft-accepts');
});

test(`never more voters than the policy's for over ${TRIM_ROUNDS_MAX} rounds when all are healthy and the surplus is the policy's own`, () => {
  let trimmed = 0;
  fc.assert(
    fc.property(arbSpec(), (spec) => {
      const model = new ClusterModel(spec).run();
      trimmed += model.actions.filter(
        (a) => a.action.kind === 'conf-change' && a.action.step === 'trim',
      ).length;
      assert.deepEqual(
        model.violations.filter((v) => v.property === 'voters-trimmed'),
        [],
      );
    }),
    { numRuns: RUNS },
  );
  // The property is not vacuous: the random operators' additions make the policy trim.
  assert.ok(trimmed > 0, 'no run trimmed a voter');
});

test('after the faults stop, a dead voter is replaced and the factor restored', () => {
  let checked = 0;
  fc.assert(
    fc.property(arbSpec(), (spec) => {
      const model = new ClusterModel(spec).run();
      if (model.livenessChecked) checked++;
      const found = model.violations.filter((v) => v.property === 'liveness');
      assert.deepEqual(found, []);
    }),
    { numRuns: RUNS },
  );
  assert.ok(checked > RUNS / 2, `liveness checked in only ${checked} runs`);
});

// ---------------------------------------------------------------------------------------------
// Injected bugs: each must be caught by the property it breaks.

/** The bug must fail the property with the property's own complaint, not a crash. */
function caught(bug: PolicyBugName, property: PropertyName, complaint: RegExp): void {
  assert.throws(
    () => holds(property, [bug], 200),
    (e: unknown) => {
      assert.ok(e instanceof Error && /Property failed/.test(e.message), String(e));
      // fast-check keeps the failing assertion as the cause.
      const cause = e.cause instanceof Error ? e.cause.message : '';
      assert.match(cause, complaint);
      return true;
    },
    `--bug ${bug} was not caught by ${property}`,
  );
}

test('the promote-lagging bug is caught: a lagging standby gets promoted', () => {
  caught('promote-lagging', 'promote-caught-up', /promoted \d+ with lag/);
});

test('the double-promote bug is caught: two changes while one is pending', () => {
  caught('double-promote', 'one-change-at-a-time', /planned while a change is pending/);
});

test('the trim-without-quorum-check bug is caught: a trim that leaves no healthy quorum', () => {
  caught('trim-without-quorum-check', 'healthy-quorum', /trim leaves \d+ healthy of/);
});

test('the trust-flapping bug is caught: a flapping member is promoted', () => {
  caught('trust-flapping', 'no-flapping-churn', /flapping member \d+ promoted/);
});
