/**
 * The etcd façade of whole assembled members on virtual time: a read-only txn is a read (a
 * barrier, then the local state), never a log entry, and answers as etcd does.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CompareResult,
  CompareTarget,
  compare,
  op,
  putRequest,
  rangeRequest,
  txnRequest,
} from '../../src/kv/api-types.js';
import type { NodeId } from '../../src/raft/types.js';
import type { RequestOptions } from '../../src/server/contract.js';
import { LoopbackHub, ManualClock, startPolicyCluster } from './harness.js';

const LINEARIZABLE: RequestOptions = { consistency: { kind: 'linearizable' }, ack: 'quorum' };
const enc = (s: string) => new TextEncoder().encode(s);

async function settle<T>(clock: ManualClock, p: Promise<T>): Promise<T> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  for (let i = 0; i < 500 && !done; i++) {
    await Promise.resolve();
    clock.advance(5);
  }
  return p;
}

test('a read-only txn is served by a read barrier, never through the log', async () => {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const founders = ([1, 2, 3] as NodeId[]).map((id) => ({
    id,
    name: `n${id}`,
    peerUrls: [`http://127.0.0.1:${id}`],
    clientUrls: [],
  }));
  const nodes = startPolicyCluster(clock, hub, founders, 3, () => ({}));
  clock.advance(2_000);
  const follower = [...nodes.values()].find((n) => !n.member.isLeader)!;
  await settle(
    clock,
    follower.facade.put(putRequest({ key: enc('k'), value: enc('v1') }), LINEARIZABLE),
  );
  clock.advance(500);
  const readOnly = txnRequest({
    compare: [
      compare({
        key: enc('k'),
        target: CompareTarget.Version,
        result: CompareResult.Greater,
        version: 0,
      }),
    ],
    success: [op.range(rangeRequest({ key: enc('k') }))],
    failure: [],
  });
  const commitBefore = follower.member.commitIndex;
  const r = await settle(clock, follower.facade.txn(readOnly, LINEARIZABLE));
  assert.equal(r.response.succeeded, true);
  const got = r.response.responses[0];
  assert.ok(got?.response === 'responseRange');
  assert.equal(new TextDecoder().decode(got.responseRange.kvs[0]!.value), 'v1');
  clock.advance(500);
  assert.equal(follower.member.commitIndex, commitBefore, 'no entry was appended for it');
  // A txn that writes still goes through the log.
  const writes = txnRequest({
    compare: [],
    success: [op.put(putRequest({ key: enc('k'), value: enc('v2') }))],
    failure: [],
  });
  await settle(clock, follower.facade.txn(writes, LINEARIZABLE));
  assert.ok(follower.member.commitIndex > commitBefore, 'a writing txn is a log entry');
  for (const n of nodes.values()) n.stop(() => {});
});
