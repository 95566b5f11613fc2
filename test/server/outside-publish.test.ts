/**
 * A warm standby outside the Raft configuration publishes its zone and standby settings through
 * the log, but never applies what it proposes: it must not re-propose them every request
 * timeout for ever (an entry every few seconds per standby). Real Members on virtual time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makePolicy } from '../../src/cluster/policy.js';
import type { NodeId } from '../../src/raft/types.js';
import { LoopbackHub, ManualClock, startPolicyCluster } from './harness.js';

const WARM_SNAPSHOT_EVERY_MS = 3_600_000; // no refresh during the test: no log from the policy

test('a standby outside the configuration publishes its facts once per leader term', () => {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const founders = [1, 2, 3, 5].map((id) => ({
    id,
    name: `n${id}`,
    peerUrls: [`http://127.0.0.1:${id}`],
    clientUrls: [`http://127.0.0.1:${100 + id}`],
    ...(id === 5 ? { role: 'standby' as const, standbyMode: 'warm' as const } : {}),
  }));
  // The policy probes n5 (so it knows the leader) and refreshes it once at the start, then
  // never again within the test: after that, nothing but publication appends to the log.
  const nodes = startPolicyCluster(clock, hub, founders, 13, (id: NodeId) => ({
    zone: id === 5 ? 'b' : 'a',
    standby: { mode: 'warm', snapshotEveryMs: WARM_SNAPSHOT_EVERY_MS },
    policy: makePolicy({
      voters: 3,
      replaceAfterMs: 600_000,
      silentAfterMs: 200,
      stabilityMs: 300,
    }),
  }));
  const leader = () => [...nodes.values()].find((n) => n.member.isLeader)!;
  clock.advance(10_000);
  const first = leader();
  assert.ok(first !== undefined, 'a leader');
  // The cluster learned n5's facts from n5 itself (it is outside: nobody else knows its zone).
  const record = first.state.member(5)!;
  assert.equal(record.zone, 'b');
  assert.equal(record.snapshotEveryMs, WARM_SNAPSHOT_EVERY_MS);

  const term = first.member.term;
  const commitBefore = first.member.commitIndex;
  clock.advance(60_000);
  assert.equal(leader().member.term, term, 'one leader term throughout');
  const appended = leader().member.commitIndex - commitBefore;
  assert.ok(appended <= 2, `${appended} entries appended in 60 s of quiet (republication?)`);
});
