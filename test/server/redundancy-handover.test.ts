/**
 * The redundancy driver on a leader that its own applied change removed from the voters: raft
 * keeps it leading until a voter of the new configuration takes over (src/raft's handover), and
 * meanwhile the configuration is no longer its to plan. Before the driver checked, its next
 * round ran the planner, whose precondition (the policy runs on a voter) stopped the process
 * (the simulator's redundancy mode crashed so on seeds 112, 213 and 865 of one tree).
 * Whole assembled members (src/server/assemble.ts) on virtual time and a loopback network.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makePolicy } from '../../src/cluster/policy.js';
import { ConfChangeTransition, ConfChangeType } from '../../src/raft/types.js';
import { LoopbackHub, ManualClock, startPolicyCluster } from './harness.js';

/** Virtual milliseconds to wait for the removed leader's window, at most. */
const WINDOW_WAIT_MS_MAX = 2_000;

test('a leader that applied its own removal plans nothing while it hands over', () => {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const founders = [1, 2, 3, 4].map((id) => ({
    id,
    name: `n${id}`,
    peerUrls: [`http://127.0.0.1:${id}`],
    clientUrls: [],
    ...(id === 4 ? { role: 'standby' as const, standbyMode: 'hot' as const } : {}),
  }));
  const nodes = startPolicyCluster(clock, hub, founders, 11, () => ({
    policy: makePolicy({
      voters: 3,
      replaceAfterMs: 1_000,
      silentAfterMs: 200,
      stabilityMs: 300,
    }),
  }));
  const members = new Map([...nodes].map(([id, n]) => [id, n.member]));
  const servers = new Map([...nodes].map(([id, n]) => [id, n]));
  try {
    clock.advance(2_000);
    const leader = [...members].find(([, m]) => m.isLeader)?.[0];
    assert.ok(leader !== undefined, 'a leader');
    const m = members.get(leader)!;
    // An operator's removal of the leader itself (etcdctl member remove): raft takes it.
    let applied = false;
    const change = {
      transition: ConfChangeTransition.Auto,
      changes: [{ type: ConfChangeType.RemoveNode, nodeId: leader }],
      context: new Uint8Array(0),
    };
    m.proposeConfChange(change, (error) => {
      assert.equal(error, null);
      applied = true;
    });
    let windowSeen = false;
    for (let waitedMs = 0; waitedMs < WINDOW_WAIT_MS_MAX && !windowSeen; waitedMs++) {
      clock.advance(1);
      if (applied && m.isLeader && !m.configuration.voters.includes(leader)) {
        windowSeen = true;
        // Its round now: it must neither plan (the planner would assert) nor act.
        servers.get(leader)!.redundancy!.tick();
        assert.equal(servers.get(leader)!.redundancy!.health(2), null, 'no health view kept');
      }
    }
    assert.ok(windowSeen, 'the removed leader led on after applying its removal');
    clock.advance(2_000);
    const next = [...members].find(([, x]) => x.isLeader)?.[0];
    assert.ok(next !== undefined && next !== leader, `a voter of the new configuration leads`);
  } finally {
    for (const s of servers.values()) s.stop(() => {});
  }
});
