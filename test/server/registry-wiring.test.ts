/**
 * The registry wired into the replicated state machine (issue 5, step 1): registry commands as
 * log entries (a RegistryError is a rejected no-op that still consumes its index, identical on
 * every member), membership changes whose context carries the policy's role records, and a
 * founding registry with roles.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeChangeContext } from '../../src/cluster/commands.js';
import { foundingConfig } from '../../src/cluster/registry.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import { ConfChangeTransition, ConfChangeType, type ConfState } from '../../src/raft/types.js';
import { encodeRegistryEntry, TandemStateMachine } from '../../src/server/tandem-state-machine.js';

const founders = [
  { id: 1, name: 'n1', peerUrls: ['http://a:1'], clientUrls: [] },
  { id: 2, name: 'n2', peerUrls: ['http://a:2'], clientUrls: [] },
  { id: 3, name: 'n3', peerUrls: ['http://a:3'], clientUrls: [] },
  { id: 4, name: 'n4', peerUrls: ['http://a:4'], clientUrls: [], role: 'standby' as const },
  { id: 5, name: 'n5', peerUrls: ['http://a:5'], clientUrls: [], role: 'replica' as const },
  {
    id: 6,
    name: 'n6',
    peerUrls: ['http://a:6'],
    clientUrls: [],
    role: 'standby' as const,
    standbyMode: 'warm' as const,
  },
];

function machine() {
  return new TandemStateMachine({ backend: new MemoryBackend(), founders, nowMs: () => 0 });
}

const conf = (voters: number[], learners: number[]): ConfState => ({
  voters,
  learners,
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});

test('founders with roles: voters vote, replicas and hot standbys learn, warm ones wait outside', () => {
  assert.deepEqual(foundingConfig(founders), { voters: [1, 2, 3], learners: [4, 5] });
  const sm = machine();
  const byId = new Map(sm.allMembers().map((m) => [m.id, m]));
  assert.deepEqual(
    [...byId.values()].map((m) => [m.name, m.role, m.placement, m.standbyMode]),
    [
      ['n1', 'voter', 'voter', 'hot'],
      ['n2', 'voter', 'voter', 'hot'],
      ['n3', 'voter', 'voter', 'hot'],
      ['n4', 'standby', 'learner', 'hot'],
      ['n5', 'replica', 'learner', 'hot'],
      ['n6', 'standby', 'none', 'warm'],
    ],
  );
  assert.deepEqual(
    sm.members().map((m) => m.id),
    [1, 2, 3, 4, 5],
    "etcd's view leaves out the standby outside the configuration",
  );
});

test('a registry command applies; one that does not fit is a rejected no-op consuming its index', () => {
  const sm = machine();
  const zone = sm.apply(
    { index: 2, term: 1 },
    encodeRegistryEntry({ kind: 'set-zone', id: 4, zone: 'z-a' }),
  );
  assert.deepEqual(zone, { kind: 'done' });
  assert.equal(sm.member(4)?.zone, 'z-a');
  const before = sm.hash();
  // Voting is Raft's business: a registry command cannot make a member a voter.
  const refused = sm.apply(
    { index: 3, term: 1 },
    encodeRegistryEntry({ kind: 'set-role', id: 4, role: 'voter' }),
  );
  assert.equal(refused.kind, 'registryRejected');
  assert.equal(sm.appliedIndex(), 3);
  assert.equal(sm.member(4)?.role, 'standby');
  assert.deepEqual(sm.hash().hash, before.hash, 'nothing changed');
  const garbage = sm.apply({ index: 4, term: 1 }, Uint8Array.of(7, 0xc1));
  assert.equal(garbage.kind, 'registryRejected');
  assert.equal(sm.appliedIndex(), 4);
});

test("a replacement's joint change records the promotion and the demotion in its own entry", () => {
  const sm = machine();
  const change = {
    transition: ConfChangeTransition.JointImplicit,
    changes: [
      { type: ConfChangeType.AddNode, nodeId: 4 },
      { type: ConfChangeType.AddLearnerNode, nodeId: 2 },
    ],
    context: encodeChangeContext({
      atMs: 1234,
      commands: [
        { kind: 'record-promotion', id: 4, atMs: 1234 },
        { kind: 'record-demotion', id: 2, atMs: 1234, role: 'standby' },
      ],
    }),
  };
  sm.applyConfChange({ index: 2, term: 1 }, change, {
    ...conf([1, 3, 4], [5, 2]),
    votersOutgoing: [1, 2, 3],
  });
  const n2 = sm.member(2)!;
  const n4 = sm.member(4)!;
  assert.equal(n4.role, 'voter');
  assert.equal(n4.promotedAtMs, 1234);
  assert.equal(n2.role, 'standby');
  assert.equal(n2.demotedAtMs, 1234);
  assert.equal(n2.placement, 'voter', 'still an outgoing voter of the joint configuration');
  sm.applyConfChange(
    { index: 3, term: 1 },
    { transition: ConfChangeTransition.Auto, changes: [], context: new Uint8Array(0) },
    conf([1, 3, 4], [2, 5]),
  );
  assert.equal(sm.member(2)!.placement, 'learner');
  assert.equal(sm.member(2)!.role, 'standby');
  assert.equal(sm.member(6)!.placement, 'none', 'the warm standby stays registered');
});
