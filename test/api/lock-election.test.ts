/**
 * etcd's Lock and Election services (v3lock, v3election) on one API server over the real kv
 * layer (harness.ts): grpc-js clients of the services, and the same through the JSON gateway
 * (/v3/lock/*, /v3/election/*). Keys are etcd's (`name/<lease hex>`), so contention between
 * callers is decided by create revision as on etcd.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type ClientReadableStream,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { loadEtcdProto } from '../../src/api/proto.js';
import { call, type Rpc } from '../integration/clients.js';
import { type Harness, startHarness } from './harness.js';

const TEST_TIMEOUT_MS = 20_000;
const WAIT_MS = 5_000;

type Rec = Record<string, unknown>;

async function until<T>(what: string, check: () => Promise<T | null> | T | null): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const v = await check();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A promise's state without waiting for it. */
function tracked<T>(p: Promise<T>) {
  const state: { done: boolean; value?: T; error?: unknown } = { done: false };
  p.then(
    (value) => Object.assign(state, { done: true, value }),
    (error: unknown) => Object.assign(state, { done: true, error }),
  );
  return state;
}

describe('Lock and Election services', { timeout: 90_000 }, () => {
  let h: Harness;
  let lock: Rpc;
  let election: Rpc;
  let kv: Rpc;
  let lease: Rpc;
  let base: string;

  before(async () => {
    h = await startHarness();
    const pkg = loadPackageDefinition(loadEtcdProto()) as unknown as Record<
      string,
      Record<string, ServiceClientConstructor>
    >;
    const make = (ctor: ServiceClientConstructor) =>
      new ctor(h.endpoint, credentials.createInsecure()) as unknown as Rpc;
    lock = make(pkg.v3lockpb!.Lock!);
    election = make(pkg.v3electionpb!.Election!);
    kv = make(pkg.etcdserverpb!.KV!);
    lease = make(pkg.etcdserverpb!.Lease!);
    base = `http://${h.endpoint}`;
  });

  after(async () => {
    for (const c of [lock, election, kv, lease]) c?.close();
    await h?.close();
  });

  const grant = async (ttl = 30) =>
    BigInt((await call(lease, 'LeaseGrant', { TTL: ttl })).ID as string);
  const keysUnder = async (prefix: string) =>
    (
      (
        await call(kv, 'Range', {
          key: Buffer.from(prefix),
          rangeEnd: Buffer.from(
            prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1),
          ),
        })
      ).kvs as { key: Buffer }[]
    ).map((k) => k.key.toString());

  test('Lock: the first caller holds it, the second waits until Unlock', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const [l1, l2] = [await grant(), await grant()];
    const first = await call(lock, 'Lock', { name: Buffer.from('L'), lease: l1.toString() });
    assert.equal((first.key as Buffer).toString(), `L/${l1.toString(16)}`);
    const second = tracked(
      call(lock, 'Lock', { name: Buffer.from('L'), lease: l2.toString() }, 15_000),
    );
    // The second caller has joined the waiters (its key exists) and does not hold the lock.
    await until('the second waiter key', async () =>
      (await keysUnder('L/')).length === 2 ? true : null,
    );
    assert.equal(second.done, false, 'the second Lock returned while the first holds it');
    const unlocked = await call(lock, 'Unlock', { key: first.key });
    assert.ok(Number((unlocked.header as Rec).revision) > 0);
    await until('the second Lock', () => (second.done ? true : null));
    assert.equal(second.error, undefined, String(second.error));
    assert.equal(((second.value as Rec).key as Buffer).toString(), `L/${l2.toString(16)}`);
    assert.deepEqual(await keysUnder('L/'), [`L/${l2.toString(16)}`]);
    await call(lock, 'Unlock', { key: (second.value as Rec).key });
  });

  test('Lock without a lease gets a 60 s one; a waiter whose deadline passes leaves no key', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const held = await call(lock, 'Lock', { name: Buffer.from('M') });
    const hex = /^M\/([0-9a-f]+)$/.exec((held.key as Buffer).toString())?.[1];
    assert.ok(hex !== undefined, (held.key as Buffer).toString());
    const ttl = await call(lease, 'LeaseTimeToLive', { ID: BigInt(`0x${hex}`).toString() });
    assert.equal(Number(ttl.grantedTTL), 60);
    const l2 = await grant();
    await assert.rejects(
      call(lock, 'Lock', { name: Buffer.from('M'), lease: l2.toString() }, 500),
      (err: ServiceError) => err.code === status.DEADLINE_EXCEEDED,
    );
    await until('the abandoned waiter key to go', async () =>
      (await keysUnder('M/')).length === 1 ? true : null,
    );
    await call(lock, 'Unlock', { key: held.key });
  });

  test('Election: campaign, leader, observe, proclaim, resign; a second campaigner takes over', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const [l1, l2] = [await grant(), await grant()];
    const name = Buffer.from('E');
    const c1 = await call(election, 'Campaign', {
      name,
      lease: l1.toString(),
      value: Buffer.from('v1'),
    });
    const leader1 = c1.leader as Rec;
    assert.equal((leader1.key as Buffer).toString(), `E/${l1.toString(16)}`);
    assert.equal(leader1.lease, l1.toString());
    const leaderNow = async () =>
      (((await call(election, 'Leader', { name })).kv as Rec).value as Buffer).toString();
    assert.equal(await leaderNow(), 'v1');

    const seen: string[] = [];
    const observe = (
      election as unknown as {
        Observe(req: object, md: Metadata): ClientReadableStream<Rec>;
      }
    ).Observe({ name }, new Metadata());
    observe.on('data', (r: Rec) => seen.push(((r.kv as Rec).value as Buffer).toString()));
    observe.on('error', () => {});
    try {
      await until('observe v1', () => (seen.includes('v1') ? true : null));
      const c2 = tracked(
        call(
          election,
          'Campaign',
          { name, lease: l2.toString(), value: Buffer.from('v2') },
          15_000,
        ),
      );
      await call(election, 'Proclaim', { leader: leader1, value: Buffer.from('v1b') });
      assert.equal(await leaderNow(), 'v1b');
      await until('observe v1b', () => (seen.includes('v1b') ? true : null));
      assert.equal(c2.done, false, 'the second campaign won while the first leads');
      await call(election, 'Resign', { leader: leader1 });
      await until('the second campaign', () => (c2.done ? true : null));
      assert.equal(c2.error, undefined, String(c2.error));
      assert.equal(await leaderNow(), 'v2');
      await until('observe v2', () => (seen.includes('v2') ? true : null));
      assert.deepEqual(seen, ['v1', 'v1b', 'v2']);
      // The old leader key no longer leads.
      await assert.rejects(
        call(election, 'Proclaim', { leader: leader1, value: Buffer.from('stale') }),
        (err: ServiceError) =>
          err.code === status.UNKNOWN && err.details === 'election: not leader',
      );
      await call(election, 'Resign', { leader: (c2.value as Rec).leader });
    } finally {
      observe.cancel();
    }
  });

  test("etcd's errors: no leader, a missing leader key", { timeout: TEST_TIMEOUT_MS }, async () => {
    await assert.rejects(
      call(election, 'Leader', { name: Buffer.from('nobody') }),
      (err: ServiceError) => err.code === status.UNKNOWN && err.details === 'election: no leader',
    );
    for (const method of ['Resign', 'Proclaim']) {
      await assert.rejects(
        call(election, method, {}),
        (err: ServiceError) =>
          err.code === status.UNKNOWN && err.details === '"leader" field must be provided',
      );
    }
  });

  test('the gateway: /v3/lock/lock and unlock, /v3/election/campaign, leader, resign', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const post = async (path: string, body: object) => {
      const res = await fetch(`${base}${path}`, { method: 'POST', body: JSON.stringify(body) });
      return { status: res.status, json: (await res.json()) as Rec };
    };
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const l1 = await grant();
    const locked = await post('/v3/lock/lock', { name: b64('G'), lease: l1.toString() });
    assert.equal(locked.status, 200, JSON.stringify(locked.json));
    assert.equal(
      Buffer.from(locked.json.key as string, 'base64').toString(),
      `G/${l1.toString(16)}`,
    );
    const unlocked = await post('/v3/lock/unlock', { key: locked.json.key });
    assert.equal(unlocked.status, 200);
    assert.deepEqual(await keysUnder('G/'), []);

    const campaign = await post('/v3/election/campaign', {
      name: b64('GE'),
      lease: l1.toString(),
      value: b64('x'),
    });
    assert.equal(campaign.status, 200, JSON.stringify(campaign.json));
    const leader = await post('/v3/election/leader', { name: b64('GE') });
    assert.equal(Buffer.from((leader.json.kv as Rec).value as string, 'base64').toString(), 'x');
    const resigned = await post('/v3/election/resign', { leader: campaign.json.leader });
    assert.equal(resigned.status, 200);
    const none = await post('/v3/election/leader', { name: b64('GE') });
    assert.equal(none.status, 500);
    assert.equal(none.json.message, 'election: no leader');
  });
});
