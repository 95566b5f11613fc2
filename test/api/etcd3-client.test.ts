/** The `etcd3` npm client, unchanged, against tandem's API edge over the real kv layer. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  EtcdLockFailedError,
  GRPCInvalidArgumentError,
  type IKeyValue,
} from 'etcd3';
import { type Harness, startHarness } from './harness.js';

const TEST_TIMEOUT_MS = 15_000;

describe('etcd3 npm client', { timeout: 40_000 }, () => {
  let h: Harness & { errors: unknown[] };
  let client: Etcd3;

  before(async () => {
    h = await startHarness();
    // No retries: a failure must surface as the status the server sent.
    client = new Etcd3({ hosts: h.endpoint, faultHandling: { global: undefined } });
  });

  after(async () => {
    client.close();
    await h.close();
    assert.deepEqual(h.errors, [], 'no unexpected (INTERNAL) errors were logged');
  });

  test('put, get, delete', { timeout: TEST_TIMEOUT_MS }, async () => {
    await client.put('greeting').value('hello');
    assert.equal(await client.get('greeting').string(), 'hello');
    const deleted = await client.delete().key('greeting');
    assert.equal(deleted.deleted, '1');
    assert.equal(await client.get('greeting').string(), null);
  });

  test('prefix reads, counts, sorted and limited', { timeout: TEST_TIMEOUT_MS }, async () => {
    for (const k of ['p/a', 'p/b', 'p/c', 'q/x']) await client.put(k).value(`v-${k}`);
    assert.deepEqual(await client.getAll().prefix('p/').strings(), {
      'p/a': 'v-p/a',
      'p/b': 'v-p/b',
      'p/c': 'v-p/c',
    });
    assert.equal(await client.getAll().prefix('p/').count(), 3);
    const last = await client.getAll().prefix('p/').sort('Key', 'Descend').limit(1).keys();
    assert.deepEqual(last, ['p/c']);
    await client.delete().prefix('p/');
    assert.equal(await client.getAll().prefix('p/').count(), 0);
  });

  test('a range over more keys than one slice (store and encoder) is whole, ordered and exact', {
    timeout: 60_000,
  }, async () => {
    // Over RANGE_SLICE_KEYS (2048, the store) and RANGE_ENCODE_SLICE_KVS (2048, the encoder):
    // the answer is read and encoded over several event-loop turns.
    const total = 5_000;
    const keyOf = (i: number) => `big/${String(i).padStart(5, '0')}`;
    for (let i = 0; i < total; i += 100) {
      const puts = [];
      for (let j = i; j < i + 100; j++) puts.push(client.put(keyOf(j)).value(`value-${j}`));
      await client
        .if('big/none', 'Version', '==', 0)
        .then(...puts)
        .commit();
    }
    const all = await client.getAll().prefix('big/').strings();
    const keys = Object.keys(all);
    assert.equal(keys.length, total);
    for (let i = 0; i < total; i++) assert.equal(all[keyOf(i)], `value-${i}`);
    assert.deepEqual(keys, [...keys].sort(), 'in key order');
    const limited = await client.getAll().prefix('big/').limit(4_500).exec();
    assert.equal(limited.kvs.length, 4_500);
    assert.equal(limited.more, true);
    assert.equal(limited.count, String(total));
    assert.equal(limited.kvs.at(-1)!.key.toString(), keyOf(4_499));
    assert.equal(await client.getAll().prefix('big/').count(), total);
    await client.delete().prefix('big/');
  });

  test('binary keys and values round-trip byte for byte', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const key = Buffer.from([0, 1, 255, 128]);
    const value = Buffer.from([255, 0, 7, 0]);
    await client.put(key).value(value);
    const got = await client.get(key).buffer();
    assert.deepEqual(got, value);
  });

  test('txn: compare-and-swap succeeds once', { timeout: TEST_TIMEOUT_MS }, async () => {
    await client.put('cas').value('1');
    const swap = () =>
      client
        .if('cas', 'Value', '==', '1')
        .then(client.put('cas').value('2'))
        .else(client.get('cas'))
        .commit();
    const first = await swap();
    const second = await swap();
    assert.equal(first.succeeded, true);
    assert.equal(second.succeeded, false);
    const kv = second.responses[0]!.response_range?.kvs[0] as IKeyValue;
    assert.equal(kv.value.toString(), '2');
    // The top-level header carries the member's ids and the kv revision.
    assert.equal(BigInt(first.header.member_id), h.backend.header().memberId);
    assert.equal(BigInt(first.header.cluster_id), h.backend.header().clusterId);
  });

  test('watch sees puts and deletes in order', { timeout: TEST_TIMEOUT_MS }, async () => {
    const watcher = await client.watch().prefix('w/').create();
    const seen: string[] = [];
    const done = new Promise<void>((resolve) => {
      watcher.on('put', (kv) => {
        seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`);
      });
      watcher.on('delete', (kv) => {
        seen.push(`del ${kv.key.toString()}`);
        resolve();
      });
    });
    await client.put('w/1').value('a');
    await client.put('w/2').value('b');
    await client.delete().key('w/1');
    await done;
    assert.deepEqual(seen, ['put w/1=a', 'put w/2=b', 'del w/1']);
    await watcher.cancel();
  });

  test('cancelling a watch while unary calls are in flight on the same connection fails none', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // Issue 13: on grpc-js's server this sometimes gave the unary call REFUSED_STREAM, then
    // "no connection established"; etcd never. Many rounds: the race is a matter of timing.
    for (let round = 0; round < 60; round++) {
      const watcher = await client.watch().key(`race/${round}`).create();
      const puts = [0, 1, 2].map((i) => client.put(`race/${round}/${i}`).value('v'));
      const get = client.get(`race/${round}/0`).string();
      await watcher.cancel();
      await Promise.all(puts);
      await get;
    }
    assert.equal(await client.get('race/59/2').string(), 'v');
  });

  test('watch from a past revision replays history', { timeout: TEST_TIMEOUT_MS }, async () => {
    const put = await client.put('hist').value('one');
    await client.put('hist').value('two');
    const watcher = await client.watch().key('hist').startRevision(put.header.revision).create();
    const values: string[] = [];
    await new Promise<void>((resolve) => {
      watcher.on('put', (kv) => {
        values.push(kv.value.toString());
        if (values.length === 2) resolve();
      });
    });
    assert.deepEqual(values, ['one', 'two']);
    await watcher.cancel();
  });

  test('lease: grant, attach, keep alive, time to live, revoke', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const lease = client.lease(30, { autoKeepAlive: false });
    const id = await lease.grant();
    await lease.put('leased').value('v');
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
    assert.equal(ttl.grantedTTL, '30');
    assert.deepEqual(
      ttl.keys.map((k) => k.toString()),
      ['leased'],
    );
    await lease.keepaliveOnce();
    const leases = await client.leaseClient.leaseLeases({});
    assert.ok(leases.leases.some((l) => l.ID === id));
    await lease.revoke();
    assert.equal(await client.get('leased').string(), null, 'revoking deletes attached keys');
  });

  test('an unknown lease is etcd\'s "requested lease not found"', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    await assert.rejects(
      client.leaseClient.leaseRevoke({ ID: '424242' }),
      (e: unknown) =>
        e instanceof EtcdLeaseInvalidError &&
        e.message.includes('etcdserver: requested lease not found'),
    );
    await assert.rejects(client.put('x').value('y').lease('424242').exec(), EtcdLeaseInvalidError);
  });

  test('a lease that expires deletes its keys and notifies watchers', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const lease = client.lease(1, { autoKeepAlive: false });
    await lease.grant();
    await lease.put('ephemeral').value('v');
    const watcher = await client.watch().key('ephemeral').create();
    const deleted = once(watcher, 'delete');
    await deleted;
    assert.equal(await client.get('ephemeral').string(), null);
    await watcher.cancel();
  });

  test('lock: a second holder is refused until the first releases', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // etcd3's Lock is a try-lock: a txn on the lock key's create revision, under a lease.
    const first = await client.lock('mutex').acquire();
    await assert.rejects(client.lock('mutex').acquire(), EtcdLockFailedError);
    await first.release();
    const second = await client.lock('mutex').acquire();
    await second.release();
    let ran = false;
    await client.lock('mutex').do(async () => {
      ran = true;
    });
    assert.ok(ran);
  });

  test('a put over the request limit is "etcdserver: request is too large"', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const value = Buffer.alloc(1.6 * 1024 * 1024, 1);
    await assert.rejects(
      client.put('big').value(value).exec(),
      (e: unknown) =>
        e instanceof GRPCInvalidArgumentError &&
        e.message.includes('etcdserver: request is too large'),
    );
    // The server keeps serving.
    await client.put('after-big').value('ok');
    assert.equal(await client.get('after-big').string(), 'ok');
  });

  test('maintenance status carries the member ids', { timeout: TEST_TIMEOUT_MS }, async () => {
    const status = await client.maintenance.status();
    assert.equal(BigInt(status.leader), h.backend.header().memberId);
    assert.equal(status.version, '3.5.0');
  });
});
