/**
 * A member's role stays true across demotions it never saw (whole assembled members on virtual
 * time, loopback network): 3 voters whose standby mode is cold and a hot standby (n4).
 * A voter cut off for replaceAfter is replaced by n4 and removed from the configuration (a cold
 * standby rests outside it), so it never receives the change. It must not serve clients as a
 * voter again: cut off and healed, or restarted, it refuses client traffic from its first request
 * and learns from the leader's outside probe that it is a cold standby; watches it served are
 * cancelled with a reason. A voter restarted normally confirms its role and serves again, also
 * after the whole cluster was down.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makePolicy } from '../../src/cluster/policy.js';
import {
  decodeRoleRecord,
  encodeRoleRecord,
  type Founder,
  foundingConfig,
  MemberRegistry,
} from '../../src/cluster/registry.js';
import { rangeRequest } from '../../src/kv/api-types.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import type { WatchResponse } from '../../src/kv/watch/response.js';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { NodeId } from '../../src/raft/types.js';
import { type AssembledMember, assembleMember } from '../../src/server/assemble.js';
import type { RequestOptions } from '../../src/server/contract.js';
import { ServerError } from '../../src/server/errors.js';
import { TandemStateMachine } from '../../src/server/tandem-state-machine.js';
import { Prng } from '../../src/util/prng.js';
import { LoopbackHub, ManualClock, VirtualPersistence } from './harness.js';

const REPLACE_AFTER_MS = 1_000;
const STEP_MS = 10;
const SERIALIZABLE: RequestOptions = { consistency: { kind: 'serializable' }, ack: 'quorum' };
const enc = new TextEncoder();

interface Node extends AssembledMember {
  readonly storage: MemoryStorage;
}

function startCluster() {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const founders: Founder[] = [1, 2, 3, 4].map((id) => ({
    id,
    name: `n${id}`,
    peerUrls: [`http://127.0.0.1:${id}`],
    clientUrls: [],
    role: id === 4 ? 'standby' : 'voter',
    standbyMode: id === 4 ? 'hot' : 'cold',
  }));
  const { voters, learners } = foundingConfig(founders);
  const nodes = new Map<NodeId, Node>();
  let incarnation = 0;
  const boot = (id: NodeId, state: TandemStateMachine, storage: MemoryStorage): Node => {
    incarnation += 1;
    const node = assembleMember(
      {
        id,
        clusterId: 1n,
        name: `n${id}`,
        clientUrls: [`http://127.0.0.1:${100 + id}`],
        zone: 'a',
        standby: { mode: id === 4 ? 'hot' : 'cold', snapshotEveryMs: 60_000 },
        timing: { tickMs: 10, electionTicks: 10, heartbeatTicks: 1, requestTimeoutMs: 2000 },
        snapshotEveryEntries: 1000,
        compactionKeepEntries: 100,
        policy: makePolicy({
          voters: 3,
          replaceAfterMs: REPLACE_AFTER_MS,
          silentAfterMs: 200,
          stabilityMs: 300,
        }),
      },
      {
        clock,
        network: hub.network(id),
        persistence: new VirtualPersistence(clock),
        storage,
        state,
        random: new Prng(7 * id + 1000 * incarnation),
      },
    );
    node.start();
    return { ...node, storage };
  };
  for (const { id } of founders) {
    const state = new TandemStateMachine({
      backend: new MemoryBackend(),
      founders,
      nowMs: () => clock.now(),
    });
    state.bootstrap();
    const storage = new MemoryStorage();
    RawNode.bootstrap(storage, voters, state.snapshot(), learners);
    nodes.set(id, boot(id, state, storage));
  }
  const leader = (): NodeId | undefined => [...nodes].find(([, n]) => n.member.isLeader)?.[0];
  /** Stops a member's process (its durable log and state stay) and starts a new one over them. */
  const restart = (id: NodeId): Node => {
    const old = nodes.get(id)!;
    old.stop(() => {});
    clock.advance(STEP_MS);
    const fresh = boot(id, old.state, old.storage);
    nodes.set(id, fresh);
    return fresh;
  };
  /** Every member down at once (a full outage), then each started again. */
  const restartAll = (): void => {
    for (const n of nodes.values()) n.stop(() => {});
    clock.advance(STEP_MS);
    for (const [id, old] of [...nodes]) nodes.set(id, boot(id, old.state, old.storage));
  };
  const close = (): void => {
    for (const n of nodes.values()) n.stop(() => {});
  };
  return { clock, hub, nodes, leader, restart, restartAll, close };
}

type Outcome = 'served' | 'refused' | `other: ${string}`;

/** A serializable read on `node`, settled within a few virtual steps. */
async function read(c: ReturnType<typeof startCluster>, node: Node): Promise<Outcome> {
  let outcome: Outcome | null = null;
  node.facade.range(rangeRequest({ key: enc.encode('k') }), SERIALIZABLE).then(
    () => {
      outcome = 'served';
    },
    (error: unknown) => {
      outcome =
        error instanceof ServerError && error.code === 'STANDBY'
          ? 'refused'
          : `other: ${(error as Error).message}`;
    },
  );
  for (let i = 0; i < 10 && outcome === null; i++) {
    await Promise.resolve();
    if (outcome === null) c.clock.advance(1);
  }
  return outcome ?? 'other: unsettled';
}

/** Advances `ms` in steps, reading on `node` after each; returns every outcome seen. */
/**
 * Reads from `id` every STEP_MS for `ms`. Each step also checks readiness (the admin port's
 * /ready) against the outcome: a member that says it is ready serves the read, or refuses it here
 * while knowing a member that serves, to which its API forwards the call.
 */
async function pollReads(c: ReturnType<typeof startCluster>, id: NodeId, ms: number) {
  const seen = new Set<Outcome>();
  for (let t = 0; t < ms; t += STEP_MS) {
    const node = c.nodes.get(id)!;
    const readiness = node.facade.clientReadiness();
    const outcome = await read(c, node);
    if (readiness.ready && outcome !== 'served') {
      assert.equal(outcome, 'refused', `ready at ${t} ms`);
      assert.ok(node.facade.servingClientUrls().length > 0, `ready at ${t} ms: forwards`);
    }
    seen.add(outcome);
    c.clock.advance(STEP_MS);
  }
  return seen;
}

function drain(stream: { next(): WatchResponse | undefined }): WatchResponse[] {
  const out: WatchResponse[] = [];
  for (let r = stream.next(); r !== undefined && out.length < 1000; r = stream.next()) out.push(r);
  return out;
}

/** Cuts a follower voter off until it is replaced by n4 and removed (a cold standby). */
function demoteWhileCut(c: ReturnType<typeof startCluster>): NodeId {
  c.clock.advance(2_000);
  const leader = c.leader()!;
  const victim = ([1, 2, 3] as NodeId[]).find((id) => id !== leader)!;
  c.hub.cut.add(victim);
  c.clock.advance(REPLACE_AFTER_MS + 3_000);
  const registry = c.nodes.get(c.leader()!)!.state;
  assert.equal(registry.member(4)!.role, 'voter', 'the hot standby replaced the victim');
  assert.equal(registry.member(victim)!.role, 'standby');
  assert.equal(registry.member(victim)!.standbyMode, 'cold');
  assert.equal(registry.member(victim)!.placement, 'none', 'removed from the configuration');
  const own = c.nodes.get(victim)!.state.member(victim)!;
  assert.equal(own.role, 'voter', 'the victim never received its demotion');
  return victim;
}

test('a voter removed while cut off stops serving once it hears the leader; its watches are cancelled', async () => {
  const c = startCluster();
  c.clock.advance(2_000);
  const leader = c.leader()!;
  const victimId = ([1, 2, 3] as NodeId[]).find((id) => id !== leader)!;
  const victim = c.nodes.get(victimId)!;
  assert.equal(await read(c, victim), 'served', 'a confirmed voter serves');
  assert.equal(victim.role.selfRole().source, 'registry');
  const stream = victim.facade.openWatchStream(() => {});
  const watchId = stream.watch({ key: enc.encode('w') });
  assert.ok(watchId >= 0);
  assert.ok(drain(stream).some((r) => r.created && r.watchId === watchId));

  c.hub.cut.add(victimId);
  c.clock.advance(REPLACE_AFTER_MS + 3_000);
  assert.equal(c.nodes.get(c.leader()!)!.state.member(victimId)!.placement, 'none');
  const terms = [...c.nodes].filter(([id]) => id !== victimId).map(([, n]) => n.member.term);

  c.hub.cut.delete(victimId);
  c.clock.advance(500);
  const role = victim.role.selfRole();
  assert.deepEqual(
    { role: role.role, mode: role.standbyMode, source: role.source, serves: role.serves },
    { role: 'standby', mode: 'cold', source: 'leader', serves: false },
  );
  assert.equal(await read(c, victim), 'refused');
  await assert.rejects(
    victim.facade.range(rangeRequest({ key: enc.encode('k') }), SERIALIZABLE),
    /member n\d is a cold standby and serves no client traffic/,
  );
  const cancelled = drain(stream).find((r) => r.watchId === watchId && r.canceled);
  assert.ok(cancelled !== undefined, 'the open watcher is cancelled');
  assert.match(cancelled.cancelReason, /is a cold standby and serves no client traffic/);
  // The stream refuses new watchers with the same reason (created + canceled, as etcd).
  assert.equal(stream.watch({ key: enc.encode('w2') }), -1);
  const refused = drain(stream);
  assert.ok(refused.some((r) => r.created && r.canceled && /cold standby/.test(r.cancelReason)));
  const after = [...c.nodes].filter(([id]) => id !== victimId).map(([, n]) => n.member.term);
  assert.deepEqual(after, terms, 'the others kept their term: no disruption');
  c.close();
});

test('a voter removed while down refuses from its first request after a restart', async () => {
  const c = startCluster();
  const victimId = demoteWhileCut(c);
  c.restart(victimId);
  // Still cut off: nothing confirms its role, so it refuses (it would have served as a voter).
  const seenCut = await pollReads(c, victimId, 500);
  assert.deepEqual([...seenCut], ['refused']);
  assert.equal(c.nodes.get(victimId)!.role.selfRole().source, 'unconfirmed');
  const terms = [...c.nodes].filter(([id]) => id !== victimId).map(([, n]) => n.member.term);
  c.hub.cut.delete(victimId);
  const seenHealed = await pollReads(c, victimId, 2_000);
  assert.deepEqual([...seenHealed], ['refused'], 'never served as a voter');
  const role = c.nodes.get(victimId)!.role.selfRole();
  assert.deepEqual([role.role, role.standbyMode, role.source], ['standby', 'cold', 'leader']);
  const after = [...c.nodes].filter(([id]) => id !== victimId).map(([, n]) => n.member.term);
  assert.deepEqual(after, terms, 'the others kept their term: no disruption');
  c.close();
});

test('a voter restarted normally serves once its role is confirmed, also after a full outage', async () => {
  const c = startCluster();
  c.clock.advance(2_000);
  const leader = c.leader()!;
  const id = ([1, 2, 3] as NodeId[]).find((x) => x !== leader)!;
  c.restart(id);
  const seen = await pollReads(c, id, 1_000);
  assert.ok(seen.has('served'), `serves again: ${[...seen].join(', ')}`);
  assert.deepEqual(
    [...seen].filter((o) => o !== 'served' && o !== 'refused'),
    [],
    'only refusals before',
  );
  assert.equal(c.nodes.get(id)!.role.selfRole().source, 'registry');
  assert.deepEqual(c.nodes.get(id)!.facade.clientReadiness(), { ready: true, reason: '' });

  // Every member down and restarted: none knows a leader at first, all refuse, then serve.
  c.restartAll();
  assert.equal(await read(c, c.nodes.get(id)!), 'refused', 'unconfirmed right after start');
  assert.deepEqual(c.nodes.get(id)!.facade.clientReadiness(), {
    ready: false,
    reason: 'no leader',
  });
  c.clock.advance(3_000);
  for (const x of [1, 2, 3] as NodeId[]) {
    assert.equal(await read(c, c.nodes.get(x)!), 'served', `n${x} serves after the outage`);
  }
  assert.equal(await read(c, c.nodes.get(4)!), 'refused', 'the hot standby still refuses');
  c.close();
});

test('the role record an outside probe carries: round trip, unknown member, bad bytes', () => {
  const registry = MemberRegistry.bootstrap([
    { id: 1, name: 'n1', peerUrls: [], clientUrls: [] },
    { id: 2, name: 'n2', peerUrls: [], clientUrls: [], role: 'standby', standbyMode: 'cold' },
    { id: 3, name: 'n3', peerUrls: [], clientUrls: [], role: 'replica', standbyMode: 'warm' },
  ]);
  const roundTrip = (id: NodeId) => decodeRoleRecord(encodeRoleRecord(registry.get(id)));
  assert.deepEqual(roundTrip(1), { role: 'voter', standbyMode: 'hot' });
  assert.deepEqual(roundTrip(2), { role: 'standby', standbyMode: 'cold' });
  assert.deepEqual(roundTrip(3), { role: 'replica', standbyMode: 'warm' });
  assert.deepEqual(roundTrip(9), { role: null, standbyMode: 'hot' }, 'not registered');
  for (const bad of [[], [1], [1, 0, 0], [4, 0], [1, 3], [255, 255]]) {
    assert.equal(decodeRoleRecord(Uint8Array.from(bad)), null, `[${bad.join(', ')}]`);
  }
});
