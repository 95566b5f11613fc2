/**
 * bench/profile.ts's stage attribution on a hand-made profile: a sample is charged by its own
 * frame, a Node-internal one by its nearest caller with a stage, and anything under snapshot
 * packing (kv/mvcc/snapshot) to the snapshots row, even lmdb's frames and native calls below it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { attribute } from '../../bench/profile.js';
import { REPO_DIR } from '../../src/cli/local-cluster.js';

const file = (path: string): string => `file://${REPO_DIR}/dist/${path}`;
const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });

test('samples go to their stage; everything under snapshot packing to the snapshots row', () => {
  // root ─┬─ drain (server/member) ─ apply (kv/state-machine) ─ put (node_modules/lmdb)
  //       ├─ slice (server) ─ recordsFrame (kv/mvcc/snapshot) ─ next (lmdb) ─ iterate (native)
  //       ├─ (garbage collector)
  //       └─ onStreamRead (node internal) ─ onData (transport)
  const nodes = [
    { id: 1, callFrame: frame('(root)', ''), children: [2, 5, 9, 10] },
    { id: 2, callFrame: frame('drain', file('server/member.js')), children: [3] },
    { id: 3, callFrame: frame('apply', file('kv/state-machine.js')), children: [4] },
    { id: 4, callFrame: frame('put', 'file:///x/node_modules/lmdb/write.js') },
    { id: 5, callFrame: frame('slice', file('server/tandem-state-machine.js')), children: [6] },
    { id: 6, callFrame: frame('recordsFrame', file('kv/mvcc/snapshot.js')), children: [7] },
    { id: 7, callFrame: frame('next', 'file:///x/node_modules/lmdb/read.js'), children: [8] },
    { id: 8, callFrame: frame('iterate', '') },
    { id: 9, callFrame: frame('(garbage collector)', '') },
    {
      id: 10,
      callFrame: frame('onStreamRead', 'node:internal/stream_base_commons'),
      children: [11],
    },
    { id: 11, callFrame: frame('onData', file('transport/inbound.js')) },
  ];
  // One sample per node of interest, 100 µs apart (the first at 100, the last lasting to the end).
  const samples = [4, 7, 8, 6, 9, 11, 4];
  const profile = {
    nodes,
    startTime: 0,
    endTime: 100 * (samples.length + 1),
    samples,
    timeDeltas: samples.map(() => 100),
  };
  const { stageUs, samples: counted } = attribute(profile, 0, profile.endTime);
  assert.equal(counted, samples.length);
  assert.equal(stageUs.get('apply (kv, lmdb)'), 200);
  assert.equal(stageUs.get('snapshots (pack, restore)'), 300);
  assert.equal(stageUs.get('GC'), 100);
  assert.equal(stageUs.get('network (transport, sockets)'), 100);
});
