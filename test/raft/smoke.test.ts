import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StateType } from '../../src/raft/types.js';
import { Cluster, enc } from './harness.js';

test('smoke: elect, replicate, commit, read', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  assert.equal(c.node(1).raft.state, StateType.Leader);
  c.node(1).propose(enc('a'));
  c.node(2).propose(enc('b'));
  c.drain();
  for (const id of [1, 2, 3]) assert.deepEqual(c.get(id).appliedData, ['a', 'b']);
  c.node(3).readIndex(enc('r1'));
  c.drain();
  assert.equal(c.get(3).readStates.length, 1);
  assert.equal(c.get(3).readStates[0]!.index, c.node(1).raft.log.committed);
});
