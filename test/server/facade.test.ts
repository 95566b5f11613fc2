/**
 * The etcd façade of whole assembled members on virtual time: a read-only txn is a read (a
 * barrier, then the local state), never a log entry, and answers as etcd does.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makePolicy } from '../../src/cluster/policy.js';
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

/** Voters n1..n3, as a new cluster's founders. */
function threeFounders() {
  return ([1, 2, 3] as NodeId[]).map((id) => ({
    id,
    name: `n${id}`,
    peerUrls: [`http://127.0.0.1:${id}`],
    clientUrls: [],
  }));
}

test('a read-only txn is served by a read barrier, never through the log', async () => {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const founders = threeFounders();
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

test("etcd's strict reconfig check: no voter added or removed past a working quorum of members that are up", async () => {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const founders = threeFounders();
  // A policy that detects a silent member but never replaces it within the test.
  const policy = makePolicy({
    voters: 3,
    replaceAfterMs: 600_000,
    silentAfterMs: 200,
    stabilityMs: 300,
  });
  const nodes = startPolicyCluster(clock, hub, founders, 5, () => ({ policy }));
  clock.advance(2_000);
  const leader = [...nodes.values()].find((n) => n.member.isLeader)!;
  const others = [...nodes.keys()].filter((id) => id !== leader.member.id);
  const notEnough = /re-configuration failed due to not enough started members/;
  // All up: a fourth voter would need 3 of 4 up; three are.
  const added = await settle(
    clock,
    leader.facade.memberAdd(['http://127.0.0.1:9'], false, LINEARIZABLE),
  );
  await settle(clock, leader.facade.memberRemove(BigInt(added.member.id), LINEARIZABLE));
  // One voter down (cut off; the leader records it unreachable): 2 of 3 up.
  hub.cut.add(others[0]!);
  clock.advance(2_000);
  assert.equal(leader.state.member(others[0]!)?.health, 'unreachable');
  // Removing the other live voter would leave 1 of 2 up; adding one would leave 2 of 4.
  await assert.rejects(
    settle(clock, leader.facade.memberRemove(BigInt(others[1]!), LINEARIZABLE)),
    notEnough,
  );
  await assert.rejects(
    settle(clock, leader.facade.memberAdd(['http://127.0.0.1:8'], false, LINEARIZABLE)),
    notEnough,
  );
  // A learner may still be added, and the down voter removed (2 of 2 left up).
  await settle(clock, leader.facade.memberAdd(['http://127.0.0.1:7'], true, LINEARIZABLE));
  await settle(clock, leader.facade.memberRemove(BigInt(others[0]!), LINEARIZABLE));
  for (const n of nodes.values()) n.stop(() => {});
});
