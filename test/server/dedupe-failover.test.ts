/**
 * A leader dies after applying a write and before answering it; the client retries on the new
 * leader. With a request id the retry is answered with the first application's revision and
 * the write is applied once; without one it is applied twice (what the id exists to prevent).
 * Whole assembled members on virtual time (test/server/harness.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { putRequest, rangeRequest } from '../../src/kv/api-types.js';
import type { NodeId } from '../../src/raft/types.js';
import type { RequestOptions } from '../../src/server/contract.js';
import { CommandKind, type CommandResult } from '../../src/server/tandem-state-machine.js';
import { LoopbackHub, ManualClock, startPolicyCluster } from './harness.js';

const enc = (s: string) => new TextEncoder().encode(s);
const LINEARIZABLE: RequestOptions = { consistency: { kind: 'linearizable' }, ack: 'quorum' };

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
  for (let i = 0; i < 2_000 && !done; i++) {
    await Promise.resolve();
    clock.advance(5);
  }
  return p;
}

function threeFounders() {
  return ([1, 2, 3] as NodeId[]).map((id) => ({
    id,
    name: `n${id}`,
    peerUrls: [`http://127.0.0.1:${id}`],
    clientUrls: [],
  }));
}

/**
 * The put of `key` proposed on the leader, which is cut off and stopped the moment it applies
 * it (its answer never leaves); then the same put, `retry` options, on the new leader.
 */
async function leaderDiesBeforeAnswering(
  key: string,
  requestId: string | undefined,
  seed: number,
): Promise<{ firstRevision: number; retryRevision: number; version: number }> {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const nodes = startPolicyCluster(clock, hub, threeFounders(), seed, () => ({}));
  clock.advance(2_000);
  const leader = [...nodes.values()].find((n) => n.member.isLeader);
  assert.ok(leader !== undefined, 'a leader');
  const opts: RequestOptions =
    requestId === undefined ? LINEARIZABLE : { ...LINEARIZABLE, requestId };
  const req = putRequest({ key: enc(key), value: enc('v') });

  let firstRevision = -1;
  const apply = leader.state.apply.bind(leader.state);
  leader.state.apply = (ctx, command): CommandResult => {
    const result = apply(ctx, command);
    const isOurs = command[0] === CommandKind.Kv || command[0] === CommandKind.Deduped;
    if (isOurs && firstRevision < 0 && result.kind === 'applied') {
      firstRevision = result.response.response.header.revision;
      hub.cut.add(leader.member.id); // dead before its answer reaches anyone
    }
    return result;
  };
  const lost = leader.facade.put(req, opts);
  lost.catch(() => {}); // the answer the client never gets
  for (let i = 0; i < 400 && firstRevision < 0; i++) {
    await Promise.resolve();
    clock.advance(5);
  }
  assert.ok(firstRevision > 0, 'the leader applied the put');
  leader.stop(() => {});

  const others = [...nodes.values()].filter((n) => n !== leader);
  for (let i = 0; i < 2_000 && !others.some((n) => n.member.isLeader); i++) clock.advance(5);
  const next = others.find((n) => n.member.isLeader);
  assert.ok(next !== undefined, 'a new leader');
  const retry = await settle(clock, next.facade.put(req, opts));
  clock.advance(500);
  const versions = others.map(
    (n) => n.state.range(rangeRequest({ key: enc(key) })).kvs[0]?.version ?? 0,
  );
  assert.equal(versions[0], versions[1], 'both survivors agree');
  for (const n of others) n.stop(() => {});
  return { firstRevision, retryRevision: retry.header.revision, version: versions[0]! };
}

/** Seeds vary the members' random streams: which member leads before and after. */
const SEEDS = [3, 7, 11, 19];

test('a retried put with a request id after the leader died unanswered applies once', async () => {
  for (const seed of SEEDS) {
    const r = await leaderDiesBeforeAnswering('k', 'retry-1', seed);
    assert.equal(r.retryRevision, r.firstRevision, `seed ${seed}: the first revision`);
    assert.equal(r.version, 1, `seed ${seed}: applied once`);
  }
});

test('without a request id the same retry applies twice (why writes are not retried blind)', async () => {
  for (const seed of SEEDS) {
    const r = await leaderDiesBeforeAnswering('k', undefined, seed);
    assert.ok(r.retryRevision > r.firstRevision, `seed ${seed}`);
    assert.equal(r.version, 2, `seed ${seed}: applied twice`);
  }
});
