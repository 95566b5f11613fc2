/**
 * The redundancy policy running on real Members (virtual time, loopback network): 3 voters and a
 * hot standby founded with their roles over TandemStateMachine. A voter cut off for longer than
 * replaceAfter is replaced by the standby in one joint change, recorded in the registry; never
 * more than one change, and none without a quorum (the cluster cut to a minority does nothing).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makePolicy } from '../../src/cluster/policy.js';
import type { NodeId } from '../../src/raft/types.js';
import { LoopbackHub, ManualClock, startPolicyCluster } from './harness.js';

const REPLACE_AFTER_MS = 1_000;

/**
 * 3 voters and a hot standby (n4); with `warm`, a warm standby (n5) outside the config too;
 * n3 is in zone b, the rest in zone a.
 */
function startCluster(warm = false, preferLeaderZone: string | null = null) {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const founders = (warm ? [1, 2, 3, 4, 5] : [1, 2, 3, 4]).map((id) => ({
    id,
    name: `n${id}`,
    peerUrls: [`http://127.0.0.1:${id}`],
    clientUrls: [],
    ...(id === 4 ? { role: 'standby' as const, standbyMode: 'hot' as const } : {}),
    ...(id === 5 ? { role: 'standby' as const, standbyMode: 'warm' as const } : {}),
  }));
  const events: string[] = [];
  const nodes = startPolicyCluster(clock, hub, founders, 7, (id) => ({
    zone: id === 3 ? 'b' : 'a',
    preferLeaderZone,
    policy: makePolicy({
      voters: 3,
      replaceAfterMs: REPLACE_AFTER_MS,
      silentAfterMs: 200,
      stabilityMs: 300,
    }),
    onPolicyEvent: (e) => events.push(`${e.action}${e.error ? ` failed: ${e.error}` : ''}`),
  }));
  const servers = new Map([...nodes].map(([id, n]) => [id, n]));
  const states = new Map([...nodes].map(([id, n]) => [id, n.state]));
  const leader = (): NodeId | undefined => [...servers].find(([, s]) => s.member.isLeader)?.[0];
  return { clock, hub, servers, states, events, leader };
}

test('a warm standby outside the configuration is probed: reachable while up, silent when cut', () => {
  const c = startCluster(true);
  c.clock.advance(2_000);
  const leader = c.leader()!;
  const state = c.states.get(leader)!;
  assert.equal(state.member(5)!.placement, 'none', 'the warm standby is outside the config');
  const driver = c.servers.get(leader)!.redundancy!;
  assert.equal(driver.health(5)?.state, 'healthy', 'heard through the probe');
  c.hub.cut.add(5);
  c.clock.advance(1_000);
  assert.equal(driver.health(5)?.state, 'unreachable', 'a cut standby goes silent');
  c.hub.cut.delete(5);
  c.clock.advance(1_000);
  assert.equal(driver.health(5)?.state, 'healthy', 'trusted again after stabilityMs');
  for (const s of c.servers.values()) s.stop(() => {});
});

test('after the hot standby took over, the next voter failure promotes the warm standby', () => {
  const c = startCluster(true);
  c.clock.advance(2_000);
  const leader = c.leader()!;
  const first = ([1, 2, 3] as NodeId[]).find((id) => id !== leader)!;
  c.hub.cut.add(first);
  c.clock.advance(REPLACE_AFTER_MS + 2_000);
  let s = c.states.get(c.leader()!)!;
  assert.equal(s.member(4)!.role, 'voter', 'the hot standby first');
  const second = ([1, 2, 3, 4] as NodeId[]).find(
    (id) => id !== c.leader() && id !== first && s.member(id)!.role === 'voter',
  )!;
  c.hub.cut.add(second);
  c.clock.advance(REPLACE_AFTER_MS + 5_000);
  s = c.states.get(c.leader()!)!;
  assert.equal(s.member(5)!.role, 'voter', `the warm standby next: ${c.events.join(', ')}`);
  assert.equal(s.member(5)!.placement, 'voter');
  assert.equal(s.member(second)!.role, 'standby');
  const voters = [1, 2, 3, 4, 5].filter((id) => s.member(id as NodeId)!.role === 'voter');
  assert.equal(voters.length, 3, 'three voters');
  for (const srv of c.servers.values()) srv.stop(() => {});
});

test('replication.preferLeaderZone: leadership moves to the healthy voter of that zone', () => {
  const c = startCluster(false, 'b');
  c.clock.advance(3_000);
  assert.equal(c.leader(), 3, `leader n3 (zone b): ${c.events.join(', ')}`);
  assert.equal(c.events.filter((e) => e === 'transfer-leader').length, 1, c.events.join(', '));
  // Zone b down: the leadership stays where the election puts it, no transfer attempts churn.
  c.hub.cut.add(3);
  c.clock.advance(3_000);
  const leader = c.leader();
  assert.ok(leader !== undefined && leader !== 3, 'a leader in zone a meanwhile');
  const transfers = c.events.filter((e) => e === 'transfer-leader').length;
  c.clock.advance(2_000);
  assert.equal(c.events.filter((e) => e === 'transfer-leader').length, transfers, 'no churn');
  for (const s of c.servers.values()) s.stop(() => {});
});

test('a voter silent for replaceAfter is replaced by the hot standby, once, with the record', () => {
  const c = startCluster();
  c.clock.advance(2_000);
  const leader = c.leader();
  assert.ok(leader !== undefined, 'a leader');
  const state = c.states.get(leader)!;
  assert.equal(state.member(4)!.role, 'standby');
  assert.equal(state.member(4)!.placement, 'learner');
  assert.equal(state.member(3)!.zone, 'b', 'zones are published');
  const victim = ([1, 2, 3] as NodeId[]).find((id) => id !== leader)!;
  c.hub.cut.add(victim);
  c.clock.advance(REPLACE_AFTER_MS / 2);
  assert.equal(state.member(victim)!.role, 'voter', 'not before replaceAfter');
  c.clock.advance(REPLACE_AFTER_MS + 2_000);
  const after = c.states.get(c.leader()!)!;
  assert.equal(after.member(4)!.role, 'voter');
  assert.ok(after.member(4)!.promotedAtMs !== null);
  assert.equal(after.member(victim)!.role, 'standby');
  assert.equal(after.member(victim)!.placement, 'learner', 'a hot standby rests as a learner');
  assert.equal(c.events.filter((e) => e === 'replace').length, 1, c.events.join(', '));
  // The member comes back: caught up, a standby, not promoted again.
  c.hub.cut.delete(victim);
  c.clock.advance(5 * REPLACE_AFTER_MS);
  const back = c.states.get(victim)!;
  assert.equal(back.member(victim)!.role, 'standby');
  assert.equal(back.member(4)!.role, 'voter');
  assert.equal(c.events.filter((e) => e === 'replace').length, 1, c.events.join(', '));
  for (const s of c.servers.values()) s.stop(() => {});
});

test('a leader cut off from its quorum plans no change', () => {
  const c = startCluster();
  c.clock.advance(2_000);
  const leader = c.leader()!;
  for (const id of [1, 2, 3, 4] as NodeId[]) if (id !== leader) c.hub.cut.add(id);
  c.clock.advance(5 * REPLACE_AFTER_MS);
  assert.equal(
    c.events.filter((e) => e === 'replace' || e === 'restore').length,
    0,
    c.events.join(', '),
  );
  for (const s of c.servers.values()) s.stop(() => {});
});
