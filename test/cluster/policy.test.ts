import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeChangeContext } from '../../src/cluster/commands.js';
import {
  makePolicy,
  PolicyError,
  type PolicyErrorCode,
  planManual,
  planRedundancy,
  planTrimTransfer,
  type RedundancyPolicy,
  type RedundancyView,
} from '../../src/cluster/policy.js';
import { policy, replica, standby, summary, view, voter } from './fixture.js';

const NOW = 20_000;
/** Silent since 5 s: 15 s at NOW, past the 10 s replacement delay. */
const DOWN = { health: 'unreachable', sinceMs: 5_000 } as const;
/** Silent since 15 s: 5 s at NOW, not yet. */
const DOWN_BRIEFLY = { health: 'unreachable', sinceMs: 15_000 } as const;
const base = [voter(1), voter(2), voter(3)];

interface Scenario {
  readonly name: string;
  readonly view: RedundancyView;
  readonly policy?: RedundancyPolicy;
  readonly expect: string;
}

const scenarios: Scenario[] = [
  {
    name: 'a voter silent for replaceAfter is replaced by the caught-up hot standby in one joint change',
    view: view([voter(1), voter(2, DOWN), voter(3), standby(4, 'hot')]),
    expect: 'replace: AddNode(4) AddLearnerNode(2) joint',
  },
  {
    name: 'a voter silent for less than replaceAfter is left alone',
    view: view([voter(1), voter(2, DOWN_BRIEFLY), voter(3), standby(4, 'hot')]),
    expect: 'nothing',
  },
  {
    name: 'a replaced voter whose mode is warm leaves the configuration',
    view: view([voter(1), voter(2, { ...DOWN, mode: 'warm' }), voter(3), standby(4, 'hot')]),
    expect: 'replace: AddNode(4) RemoveNode(2) joint',
  },
  {
    name: 'a hot standby is chosen before a warm one',
    view: view([
      ...base.slice(0, 1),
      voter(2, DOWN),
      voter(3),
      standby(4, 'warm'),
      standby(5, 'hot'),
    ]),
    expect: 'replace: AddNode(5) AddLearnerNode(2) joint',
  },
  {
    name: 'a warm standby outside the configuration is first added as a learner to catch up',
    view: view([voter(1), voter(2, DOWN), voter(3), standby(4, 'cold'), standby(5, 'warm')]),
    expect: 'stage: AddLearnerNode(5)',
  },
  {
    name: 'a staged warm standby still catching up is waited for',
    view: view([
      voter(1),
      voter(2, DOWN),
      voter(3),
      standby(5, 'warm', { placement: 'learner', lag: 5_000, health: 'lagging' }),
    ]),
    expect: 'nothing',
  },
  {
    name: 'a staged warm standby that has caught up is promoted',
    view: view([
      voter(1),
      voter(2, DOWN),
      voter(3),
      standby(5, 'warm', { placement: 'learner', lag: 3 }),
    ]),
    expect: 'replace: AddNode(5) AddLearnerNode(2) joint',
  },
  {
    name: 'a standby of the failed voter’s zone is preferred when preferSameZone',
    view: view([
      voter(1),
      voter(2, { ...DOWN, zone: 'b' }),
      voter(3),
      standby(4, 'hot', { lag: 0 }),
      standby(5, 'hot', { zone: 'b', lag: 50 }),
    ]),
    expect: 'replace: AddNode(5) AddLearnerNode(2) joint',
  },
  {
    name: 'without preferSameZone the most caught-up standby is chosen',
    view: view([
      voter(1),
      voter(2, { ...DOWN, zone: 'b' }),
      voter(3),
      standby(4, 'hot', { lag: 0 }),
      standby(5, 'hot', { zone: 'b', lag: 50 }),
    ]),
    policy: policy({ preferSameZone: false }),
    expect: 'replace: AddNode(4) AddLearnerNode(2) joint',
  },
  {
    name: 'a standby ready now is preferred to a same-zone one still catching up',
    view: view([
      voter(1),
      voter(2, { ...DOWN, zone: 'b' }),
      voter(3),
      standby(4, 'hot', { lag: 0 }),
      standby(5, 'hot', { zone: 'b', lag: 500 }),
    ]),
    expect: 'replace: AddNode(4) AddLearnerNode(2) joint',
  },
  {
    name: 'nothing is planned while a membership change is pending',
    view: view([voter(1), voter(2, DOWN), voter(3), standby(4, 'hot')], {
      pendingConfChange: true,
    }),
    expect: 'nothing',
  },
  {
    name: 'nothing is planned while the configuration is joint',
    view: view([voter(1), voter(2, DOWN), voter(3), standby(4, 'hot')], {
      votersOutgoing: [1, 2, 3],
    }),
    expect: 'nothing',
  },
  {
    name: 'nothing is planned when the leader has not heard from a quorum recently',
    view: view([voter(1), voter(2, DOWN), voter(3), standby(4, 'hot')], { quorumActive: false }),
    expect: 'nothing',
  },
  {
    name: 'nothing is planned when the voters hold no healthy quorum',
    view: view([voter(1), voter(2, DOWN), voter(3, DOWN), standby(4, 'hot'), standby(5, 'hot')]),
    expect: 'nothing',
  },
  {
    name: 'an unreachable standby is never promoted',
    view: view([voter(1), voter(2, DOWN), voter(3), standby(4, 'hot', DOWN)]),
    expect: 'nothing',
  },
  {
    name: 'the leader is never replaced, whatever its recorded health',
    view: view([voter(1, DOWN), voter(2), voter(3), standby(4, 'hot')]),
    expect: 'nothing',
  },
  {
    name: 'a missing voter is restored from a caught-up standby',
    view: view([voter(1), voter(2), standby(4, 'hot')]),
    expect: 'restore: AddNode(4)',
  },
  {
    name: 'a missing voter is restored by staging a warm standby first',
    view: view([voter(1), voter(2), standby(4, 'warm')]),
    expect: 'stage: AddLearnerNode(4)',
  },
  {
    name: 'a demoted member is not promoted again just to restore the factor',
    view: view([voter(1), voter(2), standby(4, 'hot', { demotedAtMs: 1_000 })]),
    expect: 'nothing',
  },
  {
    name: 'a demoted member is promoted again when another voter fails',
    view: view([voter(1), voter(2, DOWN), voter(3), standby(4, 'hot', { demotedAtMs: 1_000 })]),
    expect: 'replace: AddNode(4) AddLearnerNode(2) joint',
  },
  {
    name: 'a staged warm standby no longer needed returns outside the configuration',
    view: view([...base, standby(5, 'warm', { placement: 'learner' })]),
    expect: 'unstage: RemoveNode(5)',
  },
  {
    name: 'a hot standby outside the configuration is added as a learner',
    view: view([...base, standby(5, 'hot', { placement: 'none' })]),
    expect: 'add-learner: AddLearnerNode(5)',
  },
  {
    name: 'a warm standby never sent a snapshot gets one',
    view: view([...base, standby(5, 'warm'), standby(6, 'cold')]),
    expect: 'send-snapshot(5)',
  },
  {
    name: 'a warm standby whose snapshot is fresh gets none, and cold standbys never do',
    view: view([...base, standby(5, 'warm'), standby(6, 'cold')], {
      lastSnapshotSentMs: new Map([[5, NOW - 30_000]]),
    }),
    expect: 'nothing',
  },
  {
    name: 'the most overdue warm standby is refreshed first',
    view: view(
      [
        ...base,
        standby(5, 'warm', { snapshotEveryMs: 5_000 }),
        standby(6, 'warm', { snapshotEveryMs: 5_000 }),
      ],
      {
        lastSnapshotSentMs: new Map([
          [5, NOW - 6_000],
          [6, NOW - 9_000],
        ]),
      },
    ),
    expect: 'send-snapshot(6)',
  },
  {
    name: 'a snapshot refresh still happens while a membership change is pending',
    view: view([voter(1), voter(2, DOWN), voter(3), standby(4, 'hot'), standby(5, 'warm')], {
      pendingConfChange: true,
    }),
    expect: 'send-snapshot(5)',
  },
  {
    name: 'with five voters, two failures are replaced one at a time, longest silent first',
    view: view([
      voter(1),
      voter(2, { health: 'unreachable', sinceMs: 6_000 }),
      voter(3, DOWN),
      voter(4),
      voter(5),
      standby(6, 'hot'),
      standby(7, 'hot'),
    ]),
    policy: policy({ voters: 5 }),
    expect: 'replace: AddNode(6) AddLearnerNode(3) joint',
  },
];

// ---------------------------------------------------------------------------------------------
// Rule 3, trim: the surplus the policy promoted goes back to the standbys

/** A voter the policy promoted at `atMs` (a replacement or a restore). */
const PROMOTED = (atMs: number) => ({ policyPromotedAtMs: atMs });

scenarios.push(
  {
    name: 'trim: four healthy voters, one promoted by the policy: it goes back to the hot standbys',
    view: view([voter(1), voter(2), voter(3), voter(4, PROMOTED(1_000)), standby(5, 'hot')]),
    expect: 'trim: AddLearnerNode(4) joint',
  },
  {
    name: 'trim: a trimmed voter whose mode is warm leaves the configuration (a warm standby)',
    view: view([voter(1), voter(2), voter(3), voter(4, { ...PROMOTED(1_000), mode: 'warm' })]),
    expect: 'trim: RemoveNode(4) joint',
  },
  {
    name: "trim: an operator's surplus voter (member add, running) is respected",
    view: view([voter(1), voter(2), voter(3), voter(4), standby(5, 'hot')]),
    expect: 'nothing',
  },
  {
    name: 'trim: nothing while a voter is not healthy (an added member not yet started)',
    view: view([voter(1), voter(2), voter(3, DOWN_BRIEFLY), voter(4, PROMOTED(1_000))]),
    expect: 'nothing',
  },
  {
    name: 'trim: nothing while a voter lags',
    view: view([voter(1), voter(2, { health: 'lagging' }), voter(3), voter(4, PROMOTED(1_000))]),
    expect: 'nothing',
  },
  {
    name: 'trim: nothing while a membership change is pending',
    view: view([voter(1), voter(2), voter(3), voter(4, PROMOTED(1_000))], {
      pendingConfChange: true,
    }),
    expect: 'nothing',
  },
  {
    name: 'trim: the most recently promoted goes first, one change at a time',
    view: view(
      [voter(1), voter(2), voter(3), voter(4, PROMOTED(2_000)), voter(5, PROMOTED(3_000))],
      {},
    ),
    expect: 'trim: AddLearnerNode(5) joint',
  },
  {
    name: 'trim: never the leader (another promoted voter goes instead)',
    view: view([voter(1), voter(2), voter(3, PROMOTED(1_000)), voter(4, PROMOTED(3_000))], {
      leaderId: 4,
    }),
    expect: 'trim: AddLearnerNode(3) joint',
  },
  {
    name: 'trim: at the policy voters nothing is trimmed, promoted or not',
    view: view([voter(1), voter(2), voter(3, PROMOTED(1_000)), standby(4, 'hot')]),
    expect: 'nothing',
  },
  {
    name: 'trim: a failed voter is replaced first, surplus or not',
    view: view([voter(1), voter(2, DOWN), voter(3), voter(4, PROMOTED(1_000)), standby(5, 'hot')]),
    expect: 'replace: AddNode(5) AddLearnerNode(2) joint',
  },
  {
    name: 'trim without its guards (injected bug): a promoted voter trimmed while two are down',
    view: view([
      voter(1),
      voter(2),
      voter(3, PROMOTED(1_000)),
      voter(4, DOWN_BRIEFLY),
      voter(5, DOWN_BRIEFLY),
    ]),
    policy: policy({ bugs: new Set(['trim-without-quorum-check']) }),
    expect: 'trim: AddLearnerNode(3) joint',
  },
  {
    name: 'trim with its guards: the same cluster is left alone',
    view: view([
      voter(1),
      voter(2),
      voter(3, PROMOTED(1_000)),
      voter(4, DOWN_BRIEFLY),
      voter(5, DOWN_BRIEFLY),
    ]),
    expect: 'nothing',
  },
);

for (const s of scenarios) {
  test(s.name, () => {
    assert.equal(summary(planRedundancy(s.view, s.policy ?? policy(), NOW)), s.expect);
  });
}

test('a replacement carries a readable reason and the registry records in its context', () => {
  const action = planRedundancy(
    view([voter(1), voter(2, DOWN), voter(3), standby(4, 'hot')]),
    policy(),
    NOW,
  );
  assert.ok(action?.kind === 'conf-change');
  assert.equal(
    action.reason,
    'voter n2 unreachable for 15s: promoting hot standby n4 (lag 0) and demoting n2 to a hot standby',
  );
  assert.deepEqual(decodeChangeContext(action.change.context), {
    atMs: NOW,
    commands: [
      { kind: 'record-promotion', id: 4, atMs: NOW, byPolicy: true },
      { kind: 'record-demotion', id: 2, atMs: NOW, role: 'standby' },
    ],
  });
});

test('a trim carries a readable reason, records the demotion, and is a policy promotion undone', () => {
  const action = planRedundancy(
    view([voter(1), voter(2), voter(3), voter(4, { policyPromotedAtMs: 1_000 })]),
    policy(),
    NOW,
  );
  assert.ok(action?.kind === 'conf-change');
  assert.equal(
    action.reason,
    '4 voters of 3 wanted, all healthy: returning n4 (promoted by the policy) to the hot standbys',
  );
  assert.equal(action.demote, 4);
  assert.equal(action.promote, null);
  assert.deepEqual(decodeChangeContext(action.change.context), {
    atMs: NOW,
    commands: [{ kind: 'record-demotion', id: 4, atMs: NOW, role: 'standby' }],
  });
});

test('trim: when the only promoted voter leads, leadership goes to the most caught-up voter', () => {
  const v = view(
    [voter(1, { lag: 50 }), voter(2, { lag: 5 }), voter(3, { lag: 5 }), voter(4, PROMOTED(1_000))],
    { leaderId: 4 },
  );
  assert.equal(summary(planRedundancy(v, policy(), NOW)), 'nothing');
  assert.equal(planTrimTransfer(v, policy(), NOW)?.to, 2);
  // Not while a voter is unhealthy, nor when another promoted voter can be trimmed instead.
  const down = view([voter(1), voter(2, DOWN_BRIEFLY), voter(3), voter(4, PROMOTED(1_000))], {
    leaderId: 4,
  });
  assert.equal(planTrimTransfer(down, policy(), NOW), null);
  const other = view([voter(1), voter(2), voter(3, PROMOTED(500)), voter(4, PROMOTED(1_000))], {
    leaderId: 4,
  });
  assert.equal(planTrimTransfer(other, policy(), NOW), null);
});

// ---------------------------------------------------------------------------------------------
// Manual overrides

interface ManualScenario {
  readonly name: string;
  readonly view: RedundancyView;
  readonly op: 'promote' | 'demote' | 'standby';
  readonly member: string;
  readonly expect: string | { code: PolicyErrorCode; message?: string };
}

const manual: ManualScenario[] = [
  {
    name: 'promote makes a caught-up hot standby a voter',
    view: view([...base, standby(4, 'hot')]),
    op: 'promote',
    member: 'n4',
    expect: 'promote: AddNode(4)',
  },
  {
    name: 'promote of a warm standby first makes it a learner to catch up',
    view: view([...base, standby(4, 'warm')]),
    op: 'promote',
    member: 'n4',
    expect: 'add-learner: AddLearnerNode(4)',
  },
  {
    name: 'promote of a voter is refused',
    view: view(base),
    op: 'promote',
    member: 'n2',
    expect: { code: 'ALREADY_VOTER' },
  },
  {
    name: 'promote of a lagging learner is refused until it catches up',
    view: view([...base, replica(4, { lag: 900 })]),
    op: 'promote',
    member: 'n4',
    expect: { code: 'NOT_CAUGHT_UP' },
  },
  {
    name: 'promote while a change is pending is refused',
    view: view([...base, standby(4, 'hot')], { pendingConfChange: true }),
    op: 'promote',
    member: 'n4',
    expect: { code: 'CHANGE_PENDING' },
  },
  {
    name: 'demote of a voter that would cost the quorum is refused, saying why',
    view: view([voter(1), voter(2), voter(3, DOWN_BRIEFLY)]),
    op: 'demote',
    member: 'n2',
    expect: {
      code: 'NO_QUORUM',
      message: 'demoting n2 would leave 1 healthy voter of 2 (a quorum needs 2): no quorum',
    },
  },
  {
    name: 'demote of the leader is refused',
    view: view(base),
    op: 'demote',
    member: 'n1',
    expect: { code: 'IS_LEADER' },
  },
  {
    name: 'demote makes a healthy voter a replica through joint consensus',
    view: view([...base, standby(4, 'hot')]),
    op: 'demote',
    member: 'n3',
    expect: 'demote: AddLearnerNode(3) joint',
  },
  {
    name: 'demote of a replica is refused',
    view: view([...base, replica(4)]),
    op: 'demote',
    member: 'n4',
    expect: { code: 'NOT_A_VOTER' },
  },
  {
    name: 'standby of a warm-mode voter takes it out of the configuration',
    view: view([voter(1), voter(2), voter(3, { mode: 'warm' }), standby(4, 'hot')]),
    op: 'standby',
    member: 'n3',
    expect: 'standby: RemoveNode(3) joint',
  },
  {
    name: 'standby of a hot-mode replica is a registry change only',
    view: view([...base, replica(4)]),
    op: 'standby',
    member: 'n4',
    expect: 'registry: set-role(4)',
  },
  {
    name: 'standby of a standby is refused',
    view: view([...base, standby(4, 'cold')]),
    op: 'standby',
    member: 'n4',
    expect: { code: 'ALREADY_STANDBY' },
  },
  {
    name: 'an unknown name is refused',
    view: view(base),
    op: 'promote',
    member: 'n9',
    expect: { code: 'UNKNOWN_MEMBER' },
  },
];

for (const s of manual) {
  test(`manual: ${s.name}`, () => {
    const run = () => planManual(s.view, policy(), s.op, s.member, NOW);
    if (typeof s.expect === 'string') {
      assert.equal(summary(run()), s.expect);
      return;
    }
    const { code, message } = s.expect;
    assert.throws(run, (e: unknown) => {
      assert.ok(e instanceof PolicyError);
      assert.equal(e.code, code);
      if (message !== undefined) assert.equal(e.message, message);
      return true;
    });
  });
}

test('a bad policy is a PolicyError naming the field', () => {
  assert.throws(() => makePolicy({ voters: 4 }), /policy\.voters: expected an odd number/);
  assert.throws(() => makePolicy({ catchUpEntriesMax: 5_000 }), /policy\.catchUpEntriesMax/);
  assert.throws(() => makePolicy({ replaceAfterMs: 0 }), PolicyError);
});
