/**
 * The topology from members' /status answers: the registry of the highest term's answer, the
 * leader its members name, standbys kept (as standbys), unpublished members left out.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type StatusAnswer, topologyFrom } from '../../src/routing/topology.js';

const registry = [
  { id: 'a', name: 'n1', clientUrls: ['http://127.0.0.1:1'], role: 'voter', zone: 'z1' },
  { id: 'b', name: 'n2', clientUrls: ['http://127.0.0.1:2'], role: 'replica', zone: 'z2' },
  { id: 'c', name: 'n3', clientUrls: ['http://127.0.0.1:3'], role: 'standby', zone: 'z1' },
  { id: 'd', name: 'n4', clientUrls: [], role: 'voter', zone: 'z2' },
];

test('the highest term wins; its leader is named; roles and zones kept', () => {
  const answers: StatusAnswer[] = [
    { memberId: 'a', leader: 'a', isLeader: true, term: 2, registry: registry.slice(0, 1) },
    { memberId: 'b', leader: 'c', isLeader: false, term: 3, registry },
  ];
  const t = topologyFrom(answers)!;
  assert.equal(t.term, 3);
  assert.equal(t.leaderId, 'c', 'the stale leader of term 2 is not taken');
  assert.deepEqual(
    t.members.map((m) => `${m.id}:${m.role}:${m.zone}`),
    ['a:voter:z1', 'b:replica:z2', 'c:standby:z1'],
    'the member without a client URL is left out',
  );
});

test('a leader that answers itself beats a follower that names another in the same term', () => {
  const t = topologyFrom([
    { memberId: 'b', leader: 'a', isLeader: false, term: 5, registry },
    { memberId: 'c', leader: 'c', isLeader: true, term: 5, registry },
  ])!;
  assert.equal(t.leaderId, 'c');
});

test('no leader known: null; no answer: null; etcd view when there is no registry', () => {
  assert.equal(
    topologyFrom([{ memberId: 'a', leader: '0', isLeader: false, term: 1, registry }])!.leaderId,
    null,
  );
  assert.equal(topologyFrom([]), null);
  const etcdOnly = topologyFrom([
    {
      memberId: 'a',
      leader: 'a',
      isLeader: true,
      term: 1,
      members: [
        { id: 'a', name: 'n1', clientUrls: ['http://h:1'], isLearner: false },
        { id: 'b', name: 'n2', clientUrls: ['http://h:2'], isLearner: true },
      ],
    },
  ])!;
  assert.deepEqual(
    etcdOnly.members.map((m) => m.role),
    ['voter', 'unknown'],
  );
});
