/**
 * Bad input against a real 3-member cluster: garbage and an oversized length prefix on a
 * member's PEER port (it logs, drops the connection and keeps serving), malformed protobuf on
 * the client port (an error status), and etcd's errors for an unknown lease, an empty key, an
 * invalid range and an oversized put.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { FRAME_VERSION } from '../../src/transport/limits.js';
import { call, ctl, ETCDCTL_MISSING, grpcClients, killCtls, rawUnary } from './clients.js';
import { startCluster } from './cluster.js';

const TEST_TIMEOUT_MS = 30_000;

function grpcError(code: status, details: string | RegExp) {
  return (e: unknown) => {
    const err = e as ServiceError;
    assert.equal(err.code, code, `code ${err.code} (${err.details})`);
    if (typeof details === 'string') assert.equal(err.details, details);
    else assert.match(err.details, details);
    return true;
  };
}

/** Connects to host:port, writes `bytes`, waits for the server to close (bounded), closes. */
function sendRaw(address: string, bytes: Buffer, holdMs = 2_000): Promise<'closed' | 'held'> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('held');
    }, holdMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', () => {});
    socket.on('error', () => {}); // a reset is the server dropping us
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    socket.on('timeout', () => reject(new Error('socket timeout')));
  });
}

describe('bad input to a 3-member cluster', { skip: ETCDCTL_MISSING, timeout: 120_000 }, () => {
  let c: LocalCluster;
  let conns: ReturnType<typeof grpcClients>[];

  before(async () => {
    c = await startCluster({ label: 'bad-input' });
    conns = c.members.map((m) => grpcClients(m.spec.client));
  });

  after(async () => {
    killCtls();
    for (const conn of conns ?? []) conn.close();
    await c?.destroy({ kill: true });
  });

  const kv = (m: LocalMember) => conns[c.members.indexOf(m)]!.kv;

  async function assertServing(m: LocalMember, key: string): Promise<void> {
    assert.ok(m.running, `${m.name} still running`);
    await call(kv(m), 'Put', { key: Buffer.from(key), value: Buffer.from('ok') });
    for (const other of c.members) {
      const got = await call(kv(other), 'Range', { key: Buffer.from(key) });
      assert.equal((got.kvs as { value: Buffer }[])[0]?.value.toString(), 'ok', other.name);
    }
  }

  test(
    'garbage and an oversized length prefix on the peer port',
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('peer garbage', async () => {
        const leader = await c.leader();
        const follower = c.followers(leader)[0]!;
        for (const target of [follower, leader]) {
          // Random bytes (a random length prefix, most likely over the handshake limit).
          assert.equal(await sendRaw(target.spec.peer, randomBytes(64 * 1024)), 'closed');
          // A valid-looking header announcing a 4 GiB frame.
          const huge = Buffer.from([0xff, 0xff, 0xff, 0xff, FRAME_VERSION, 1, 0, 0]);
          assert.equal(await sendRaw(target.spec.peer, huge), 'closed');
          // Under the frame limit but over the handshake limit, then nothing.
          const big = Buffer.alloc(6);
          big.writeUInt32BE(1024 * 1024, 0);
          big[4] = FRAME_VERSION;
          big[5] = 1;
          assert.equal(await sendRaw(target.spec.peer, big), 'closed');
          // A right-sized HELLO frame whose payload is not a HELLO.
          const hello = Buffer.concat([
            Buffer.from([0, 0, 0, 10, FRAME_VERSION, 1]),
            randomBytes(8),
          ]);
          assert.equal(await sendRaw(target.spec.peer, hello), 'closed');
          // A frame of the wrong type before the handshake.
          assert.equal(
            await sendRaw(target.spec.peer, Buffer.from([0, 0, 0, 2, FRAME_VERSION, 4])),
            'closed',
          );
        }
        for (const target of [follower, leader]) {
          // One logged refusal per bad connection: five per member.
          await waitFor(`${target.name} to log the bad peer input`, 5_000, () =>
            (target.log().match(/closing inbound peer connection: /g) ?? []).length >= 5
              ? true
              : null,
          );
        }
        await sleep(500);
        assert.equal(c.running.length, 3, 'no member died');
        assert.equal(await c.waitForLeader(), leader, 'no election was caused');
        await assertServing(follower, 'after-peer-garbage/f');
        await assertServing(leader, 'after-peer-garbage/l');
        const health = await ctl(c.endpoints(), ['endpoint', 'health']);
        assert.equal(health.code, 0, health.stderr);
      }),
  );

  test(
    'malformed protobuf on the client port is an error status; the member keeps serving',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('client garbage', async () => {
        const m = c.members[1]!;
        const raw = conns[1]!.raw;
        const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a]);
        for (const path of [
          '/etcdserverpb.KV/Put',
          '/etcdserverpb.KV/Range',
          '/etcdserverpb.KV/Txn',
          '/etcdserverpb.Lease/LeaseGrant',
          '/etcdserverpb.Cluster/MemberAdd',
        ]) {
          await assert.rejects(
            rawUnary(raw, path, garbage),
            grpcError(status.INTERNAL, /deserializ/),
          );
        }
        await assert.rejects(
          rawUnary(raw, '/etcdserverpb.KV/NoSuchMethod', Buffer.alloc(0)),
          grpcError(status.UNIMPLEMENTED, /./),
        );
        await assertServing(m, 'after-client-garbage');
      }),
  );

  test(
    "etcd's errors: unknown lease, empty key, invalid range, oversized put",
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('etcd errors', async () => {
        const leader = await c.leader();
        for (const m of [leader, c.followers(leader)[0]!]) {
          await assert.rejects(
            call(kv(m), 'Put', { key: Buffer.from('k'), value: Buffer.from('v'), lease: '123456' }),
            grpcError(status.NOT_FOUND, 'etcdserver: requested lease not found'),
          );
          await assert.rejects(
            call(kv(m), 'Put', { key: Buffer.alloc(0), value: Buffer.from('v') }),
            grpcError(status.INVALID_ARGUMENT, 'etcdserver: key is not provided'),
          );
          await assert.rejects(
            call(kv(m), 'Range', { key: Buffer.alloc(0) }),
            grpcError(status.INVALID_ARGUMENT, 'etcdserver: key is not provided'),
          );
          await assert.rejects(
            call(kv(m), 'DeleteRange', { key: Buffer.alloc(0) }),
            grpcError(status.INVALID_ARGUMENT, 'etcdserver: key is not provided'),
          );
          await assert.rejects(
            call(kv(m), 'Range', { key: Buffer.from('a'), sortOrder: 9 }),
            grpcError(status.INVALID_ARGUMENT, 'etcdserver: invalid sort option'),
          );
          await assert.rejects(
            call(kv(m), 'Range', { key: Buffer.from('a'), revision: 1_000_000 }),
            grpcError(
              status.OUT_OF_RANGE,
              'etcdserver: mvcc: required revision is a future revision',
            ),
          );
          const big = Buffer.alloc(1.5 * 1024 * 1024 + 100, 7);
          await assert.rejects(
            call(kv(m), 'Put', { key: Buffer.from('big'), value: big }),
            grpcError(status.INVALID_ARGUMENT, 'etcdserver: request is too large'),
          );
        }
        // The same through etcdctl.
        const unknownLease = await ctl(c.endpoints(), ['put', '--lease=1e240', 'k', 'v']);
        assert.notEqual(unknownLease.code, 0);
        assert.match(unknownLease.stderr, /etcdserver: requested lease not found/);
        const empty = await ctl(c.endpoints(), ['put', '', 'v']);
        assert.notEqual(empty.code, 0);
        assert.match(empty.stderr, /key is not provided|put command needs/);
        await assertServing(leader, 'after-etcd-errors');
      }),
  );
});
