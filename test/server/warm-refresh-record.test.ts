/**
 * A warm standby's completed refresh is recorded in the replicated registry (record-refresh,
 * wall-clock time) by the leader's RedundancyDriver on real Members (virtual time, loopback
 * network): 3 voters and a warm standby (n5) outside the configuration. A new leader then does
 * not refresh it again at once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makePolicy } from '../../src/cluster/policy.js';
import type { NodeId } from '../../src/raft/types.js';
import { LoopbackHub, ManualClock, startPolicyCluster } from './harness.js';

function startCluster() {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const founders = [1, 2, 3, 5].map((id) => ({
    id,
    name: `n${id}`,
    peerUrls: [`http://127.0.0.1:${id}`],
    clientUrls: [],
    ...(id === 5 ? { role: 'standby' as const, standbyMode: 'warm' as const } : {}),
  }));
  const events: { atMs: number; action: string }[] = [];
  const nodes = startPolicyCluster(clock, hub, founders, 11, () => ({
    zone: 'a',
    policy: makePolicy({
      voters: 3,
      replaceAfterMs: 5_000,
      silentAfterMs: 200,
      stabilityMs: 300,
    }),
    onPolicyEvent: (e) => events.push({ atMs: clock.now(), action: e.action }),
  }));
  const servers = new Map([...nodes].map(([id, n]) => [id, n]));
  const states = new Map([...nodes].map(([id, n]) => [id, n.state]));
  const members = new Map([...nodes].map(([id, n]) => [id, n.member]));
  const leader = (): NodeId | undefined =>
    [...members].find(([, m]) => m.isLeader && !hub.cut.has(m.id))?.[0];
  return { clock, hub, servers, states, events, leader };
}

test('a refresh is recorded in every registry; a new leader does not refresh again at once', () => {
  const c = startCluster();
  const wallBeforeMs = c.clock.wallNow();
  c.clock.advance(2_000);
  const actions = c.events.map((e) => e.action);
  assert.deepEqual(
    actions.filter((a) => a === 'warm-refresh' || a === 'unstage' || a === 'record-refresh'),
    ['warm-refresh', 'unstage', 'record-refresh'],
    actions.join(', '),
  );
  // The voters' registries (n5, outside the configuration, gets no log until its next refresh).
  for (const id of [1, 2, 3] as NodeId[]) {
    const m = c.states.get(id)!.member(5)!;
    assert.equal(m.placement, 'none', `n${id}: back outside`);
    assert.ok(
      m.lastRefreshAtMs !== null &&
        m.lastRefreshAtMs >= wallBeforeMs &&
        m.lastRefreshAtMs <= c.clock.wallNow(),
      `n${id}: refresh recorded in the clock's wall time, got ${m.lastRefreshAtMs}`,
    );
  }
  // Depose the leader: its successor finds the recorded refresh (60 s interval) and waits.
  const old = c.leader()!;
  c.hub.cut.add(old);
  const cutAtMs = c.clock.now();
  c.clock.advance(2_000);
  const next = c.leader();
  assert.ok(next !== undefined && next !== old, 'a new leader');
  const refreshes = c.events.filter((e) => e.atMs > cutAtMs && e.action === 'warm-refresh');
  assert.deepEqual(refreshes, [], 'no refresh right after the election');
  for (const s of c.servers.values()) s.stop(() => {});
});
