/** The page's model (dashboard/src/model.ts): cards from `tandem dev`'s state, lag in time. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CommitClock,
  type DevState,
  type MemberStatusJson,
  viewFromDev,
  viewFromMember,
} from '../../dashboard/src/model.js';

function status(name: string, over: Partial<MemberStatusJson> = {}): MemberStatusJson {
  return {
    name,
    memberId: name,
    leader: 'n1',
    isLeader: name === 'n1',
    term: 4,
    commitIndex: 100,
    appliedIndex: 100,
    role: 'voter',
    standbyMode: 'hot',
    zone: 'a',
    health: 'healthy',
    lastHeardFromLeaderMsAgo: 10,
    standbyStalenessSeconds: null,
    replication: { voters: 2, configuredVoters: 3 },
    registry: [],
    ...over,
  };
}

const stats = {
  atMs: 0,
  writesPerSecond: 0,
  readsPerSecond: 0,
  latencyP99Ms: null,
  eventLoopDelayMs: null,
};

function member(name: string, s: MemberStatusJson | null, process: 'running' | 'down' = 'running') {
  return {
    name,
    admin: `127.0.0.1:${name.slice(1)}`,
    zone: 'a',
    plannedRole: 'voter',
    plannedStandbyMode: 'hot',
    process,
    partitioned: false,
    dashboard: s === null ? null : { status: s, stats, events: { epochMs: 0, items: [] } },
  };
}

describe('dashboard model', () => {
  test('cards: roles, the one leader, lag against the leader, down members from the registry', () => {
    const registry = [
      {
        id: 'n3',
        name: 'n3',
        role: 'standby',
        standbyMode: 'warm',
        zone: 'b',
        health: 'unreachable',
        lag: 7,
        lastRefreshMs: 30_000,
      },
    ];
    const dev: DevState = {
      members: [
        member('n1', status('n1', { registry })),
        member('n2', status('n2', { appliedIndex: 90, role: 'replica', zone: 'b' })),
        member('n3', null, 'down'),
      ],
      load: null,
      timeline: [],
    };
    const clock = new CommitClock();
    const view = viewFromDev(dev, clock, 1_000);
    assert.equal(view.leader, 'n1');
    assert.deepEqual(view.zones, ['a', 'b']);
    assert.deepEqual([view.voters, view.configuredVoters], [2, 3]);
    const [n1, n2, n3] = view.cards;
    assert.deepEqual([n1!.isLeader, n2!.isLeader, n3!.isLeader], [true, false, false]);
    assert.equal(n2!.roleLabel, 'replica');
    assert.equal(n2!.lagEntries, 10);
    assert.equal(n3!.roleLabel, 'standby warm');
    assert.equal(n3!.health, 'down');
    assert.equal(n3!.lagEntries, 7, "a member that does not answer: the leader's registry");
    assert.equal(n3!.stalenessSeconds, 30);
  });

  test('two members saying they lead: the one of the higher term; none in the same term', () => {
    const both = (term2: number): DevState => ({
      members: [
        member('n1', status('n1')),
        member('n2', status('n2', { isLeader: true, term: term2 })),
      ],
      load: null,
      timeline: [],
    });
    const same = viewFromDev(both(4), new CommitClock(), 0);
    assert.equal(same.leader, null);
    assert.ok(same.cards.every((c) => !c.isLeader));
    const newer = viewFromDev(both(5), new CommitClock(), 0);
    assert.equal(newer.leader, 'n2');
    assert.deepEqual(
      newer.cards.map((c) => c.isLeader),
      [false, true],
    );
  });

  test("lag in time: since the leader had committed the entry after the member's applied one", () => {
    const clock = new CommitClock();
    clock.note(1_000, 10);
    clock.note(2_000, 20);
    clock.note(3_000, 30);
    assert.equal(clock.lagMs(30, 3_500), 0);
    assert.equal(clock.lagMs(25, 3_500), 500, 'entry 26 was first seen committed at 3000');
    assert.equal(clock.lagMs(15, 3_500), 1_500);
    assert.equal(clock.lagMs(5, 3_500), 2_500);
    assert.equal(new CommitClock().lagMs(5, 0), null);
  });

  test("one member's view: the others from its registry, the leader by id", () => {
    const s = status('n2', {
      isLeader: false,
      leader: 'id1',
      registry: [
        {
          id: 'id1',
          name: 'n1',
          role: 'voter',
          standbyMode: 'hot',
          zone: 'a',
          health: 'healthy',
          lag: null,
          lastRefreshMs: null,
        },
        {
          id: 'id2',
          name: 'n2',
          role: 'voter',
          standbyMode: 'hot',
          zone: 'a',
          health: 'healthy',
          lag: null,
          lastRefreshMs: null,
        },
      ],
    });
    const view = viewFromMember(s, new CommitClock(), 0);
    assert.equal(view.leader, 'n1');
    assert.equal(view.cards.find((c) => c.name === 'n2')!.answered, true);
    assert.equal(view.cards.find((c) => c.name === 'n1')!.answered, false);
  });
});
