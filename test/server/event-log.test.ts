import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfChangeType, NONE, type NodeId, StateType } from '../../src/raft/types.js';
import { EVENT_LOG_CAPACITY, MemberEventLog } from '../../src/server/event-log.js';

const NAMES: Record<number, string> = { 1: 'n1', 2: 'n2', 3: 'n3', 5: 'n5' };

function log(initialVoters?: NodeId[]) {
  const clock = { mono: 1_000, wall: 1_700_000_000_000 };
  const heard = new Map<NodeId, number>();
  const l = new MemberEventLog(
    {
      nowMs: () => clock.mono,
      wallNowMs: () => clock.wall,
      nameOf: (id) => NAMES[id] ?? id.toString(16),
      lastHeardMs: (id) => heard.get(id),
    },
    initialVoters === undefined
      ? undefined
      : {
          voters: initialVoters,
          learners: [5],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        },
  );
  return { l, clock, heard };
}

const conf = (voters: NodeId[], learners: NodeId[]) => ({
  voters,
  learners,
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});

describe('MemberEventLog', () => {
  test('a failover: leader lost, then a new leader with the time since the old one was heard', () => {
    const { l, clock, heard } = log();
    l.noteSoftState({ lead: 1, raftState: StateType.Follower }, 2);
    heard.set(1, 1_000);
    clock.mono = 1_400;
    l.noteSoftState({ lead: NONE, raftState: StateType.Candidate }, 3);
    clock.mono = 1_650;
    l.noteSoftState({ lead: 2, raftState: StateType.Follower }, 3);
    const events = l.since(0);
    assert.deepEqual(
      events.map((e) => e.kind),
      ['leader', 'election', 'leader-lost', 'leader'],
    );
    const last = events.at(-1)!;
    assert.equal(last.subject, 'n2');
    assert.equal(last.failoverMs, 650, 'from the last word of n1 (1000) to n2 leading (1650)');
    assert.match(last.text, /n2 leads term 3, 650 ms after the last word of n1/);
    // A leader transfer (no leaderless gap) has no failover time.
    l.noteSoftState({ lead: 3, raftState: StateType.Follower }, 4);
    assert.equal(l.since(4)[0]!.failoverMs, undefined);
  });

  test('promotion, demotion and joins told apart by the configuration before the change', () => {
    const { l } = log([1, 2, 3]);
    const change = (type: ConfChangeType, nodeId: NodeId) => ({
      transition: 0 as const,
      changes: [{ type, nodeId }],
      context: new Uint8Array(0),
    });
    l.noteConfChange(change(ConfChangeType.AddNode, 5), conf([1, 2, 3, 5], []));
    l.noteConfChange(change(ConfChangeType.AddLearnerNode, 3), conf([1, 2, 5], [3]));
    l.noteConfChange(change(ConfChangeType.AddLearnerNode, 6), conf([1, 2, 5], [3, 6]));
    l.noteConfChange(change(ConfChangeType.RemoveNode, 6), conf([1, 2, 5], [3]));
    assert.deepEqual(
      l.since(0).map((e) => `${e.kind}: ${e.text}`),
      [
        'promotion: n5 promoted to voter',
        'demotion: n3 demoted to learner',
        'membership: 6 joined as a learner',
        'membership: 6 left the configuration',
      ],
    );
  });

  test('bounded: the oldest events are dropped; since() reads after a sequence number', () => {
    const { l } = log();
    const total = EVENT_LOG_CAPACITY + 10;
    for (let i = 0; i < total; i++) l.notePolicy({ action: 'warm-refresh', reason: `r${i}` });
    const all = l.since(0);
    assert.equal(all.length, EVENT_LOG_CAPACITY);
    assert.equal(all[0]!.seq, 11);
    assert.equal(all.at(-1)!.seq, total);
    assert.equal(l.lastSeq, total);
    assert.deepEqual(
      l.since(total - 2).map((e) => e.text),
      [`warm-refresh: r${total - 2}`, `warm-refresh: r${total - 1}`],
    );
    assert.deepEqual(l.since(total), []);
  });
});
