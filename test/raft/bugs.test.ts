/**
 * Injected bugs: each must change behaviour exactly where documented, and only when switched on
 * (the simulator relies on them to prove it can fail).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUG_NAMES, type BugName, MessageType, StateType } from '../../src/raft/types.js';
import { Cluster, enc, entry, msg, newSolo, readMessages, storageWithTerms } from './harness.js';

const bugs = (...names: BugName[]): ReadonlySet<BugName> => new Set(names);

test('the bug list names the liveness bug', () => {
  assert.deepEqual(
    [...BUG_NAMES],
    [
      'commit-old-term',
      'forget-vote',
      'stale-read',
      'skip-log-check',
      'ack-before-durable',
      'probe-never-resumes',
    ],
  );
});

test('commit-old-term: counting replicas commits an entry of a previous term (§5.4.2)', () => {
  for (const on of [false, true]) {
    const storage = storageWithTerms([1, 2, 3], [1, 2], 2);
    const s = newSolo(1, [1, 2, 3], on ? { bugs: bugs('commit-old-term') } : {}, storage);
    s.node.raft.becomeCandidate();
    s.node.raft.becomeLeader();
    readMessages(s);
    s.node.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: 3, index: 3 }));
    assert.equal(s.node.raft.log.committed, on ? 3 : 1, `bug ${on}`);
  }
});

test('forget-vote: the vote never reaches storage, so a restarted node votes twice', () => {
  for (const on of [false, true]) {
    const overrides = on ? { bugs: bugs('forget-vote') } : {};
    const s = newSolo(1, [1, 2, 3], overrides);
    s.node.step(msg({ type: MessageType.Vote, from: 2, to: 1, term: 2, index: 1, logTerm: 1 }));
    readMessages(s);
    assert.equal(s.node.raft.vote, 2, 'in memory the node did vote');
    assert.equal(s.storage.initialState().hardState.vote, on ? 0 : 2);
    // Restart over the same storage and ask for a vote for 3 in the same term.
    const again = newSolo(1, [1, 2, 3], overrides, s.storage);
    again.node.step(msg({ type: MessageType.Vote, from: 3, to: 1, term: 2, index: 1, logTerm: 1 }));
    const resp = readMessages(again).find((m) => m.type === MessageType.VoteResp)!;
    assert.equal(resp.reject, !on, `bug ${on}`);
  }
});

test('stale-read: a fresh leader answers ReadIndex at once, with no heartbeat round', () => {
  for (const on of [false, true]) {
    const s = newSolo(1, [1, 2, 3], on ? { bugs: bugs('stale-read') } : {});
    s.node.raft.becomeCandidate();
    s.node.raft.becomeLeader();
    readMessages(s);
    s.node.readIndex(enc('r'));
    readMessages(s);
    assert.equal(s.readStates.length, on ? 1 : 0, `bug ${on}`);
  }
});

test('skip-log-check: a follower accepts an append whose previous entry does not match', () => {
  for (const on of [false, true]) {
    const storage = storageWithTerms([1, 2, 3], [1, 2], 2);
    const s = newSolo(2, [1, 2, 3], on ? { bugs: bugs('skip-log-check') } : {}, storage);
    s.node.step(
      msg({
        type: MessageType.App,
        from: 1,
        to: 2,
        term: 4,
        index: 3,
        logTerm: 3,
        entries: [entry(4, 4)],
        commit: 1,
      }),
    );
    const resp = readMessages(s).find((m) => m.type === MessageType.AppResp)!;
    assert.equal(resp.reject, !on, `bug ${on}`);
    assert.equal(s.node.raft.log.lastIndex(), on ? 4 : 3);
  }
});

test('probe-never-resumes: a lost probe stalls a follower forever (liveness)', () => {
  for (const on of [false, true]) {
    const c = new Cluster([1, 2, 3], {
      bugsFor: (id) => (on && id === 1 ? bugs('probe-never-resumes') : undefined),
    });
    c.elect(1);
    // Restart follower 3's progress in probe state with a lost probe: the next append is dropped.
    let dropped = false;
    c.filter = (m) => {
      if (!dropped && m.type === MessageType.App && m.to === 3) {
        dropped = true;
        return false;
      }
      return true;
    };
    c.node(1).reportUnreachable(3); // replicate -> probe
    c.node(1).propose(enc('x'));
    c.drain();
    assert.ok(dropped);
    for (let i = 0; i < 50; i++) {
      c.tickAll(1);
      c.drain();
    }
    assert.equal(c.node(1).raft.state, StateType.Leader);
    assert.deepEqual(c.get(3).appliedData, on ? [] : ['x'], `bug ${on}`);
  }
});

test('ack-before-durable: acknowledgements and votes leave before the write', () => {
  for (const on of [false, true]) {
    const f = newSolo(2, [1, 2, 3], on ? { bugs: bugs('ack-before-durable') } : {});
    f.node.step(
      msg({
        type: MessageType.App,
        from: 1,
        to: 2,
        term: 1,
        index: 1,
        logTerm: 1,
        entries: [entry(2, 1)],
        commit: 1,
      }),
    );
    const rd = f.node.ready();
    assert.equal(
      rd.messagesNow.some((m) => m.type === MessageType.AppResp),
      on,
      `bug ${on}: the acknowledgement leaves before the write`,
    );
  }
});
