import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeAttributes,
  encodeAttributes,
  MemberRegistry,
  RegistryError,
} from '../../src/cluster/registry.js';

const conf = (voters: number[], learners: number[] = []) => ({
  voters,
  learners,
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});

test('attributes round-trip, and garbage decodes to null rather than throwing', () => {
  const a = { name: 'n4', peerUrls: ['127.0.0.1:2480', '127.0.0.2:2480'], clientUrls: [] };
  assert.deepEqual(decodeAttributes(encodeAttributes(a)), a);
  assert.equal(decodeAttributes(new Uint8Array([0xc1, 0xff, 0x00])), null);
  assert.equal(decodeAttributes(new Uint8Array()), null);
  assert.throws(
    () => encodeAttributes({ name: 'x'.repeat(300), peerUrls: [], clientUrls: [] }),
    RegistryError,
  );
});

test('a conf state adds learners with attributes, promotes them, and removes members', () => {
  const r = MemberRegistry.bootstrap([
    { id: 1, name: 'n1', peerUrls: ['a:1'], clientUrls: ['a:2'] },
    { id: 2, name: 'n2', peerUrls: ['b:1'], clientUrls: ['b:2'] },
    { id: 3, name: 'n3', peerUrls: ['c:1'], clientUrls: ['c:2'] },
  ]);
  r.applyConfState(conf([1, 2, 3], [4]), 4, { name: '', peerUrls: ['d:1'], clientUrls: [] });
  assert.deepEqual(r.get(4), {
    id: 4,
    name: '',
    peerUrls: ['d:1'],
    clientUrls: [],
    isLearner: true,
  });
  r.updateAttributes(4, { name: 'n4', clientUrls: ['d:2'] });
  r.applyConfState(conf([1, 2, 3, 4]), 4, null);
  assert.deepEqual(r.get(4), {
    id: 4,
    name: 'n4',
    peerUrls: ['d:1'],
    clientUrls: ['d:2'],
    isLearner: false,
  });
  r.applyConfState(conf([1, 2, 4]), 3, null);
  assert.deepEqual(
    r.list().map((m) => m.id),
    [1, 2, 4],
  );
  assert.equal(r.findByPeerUrl('b:1')?.name, 'n2');
});

test('the snapshot restores an identical registry', () => {
  const r = MemberRegistry.bootstrap([
    { id: 7, name: 'n7', peerUrls: ['x:1'], clientUrls: ['x:2'] },
  ]);
  r.applyConfState(conf([7], [9]), 9, { name: 'n9', peerUrls: ['y:1'], clientUrls: [] });
  const copy = MemberRegistry.fromSnapshot(r.toSnapshot());
  assert.deepEqual(copy.list(), r.list());
});
