/**
 * The edge under bad or unusual input, with a raw grpc-js client: malformed protobuf, messages
 * over the gRPC limit, bad fields and metadata, auth and health answers, watch backpressure,
 * keep-alives of unknown leases, the snapshot stream, and shutdown ending open streams.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  type Client,
  type ClientDuplexStream,
  type ClientReadableStream,
  credentials,
  Client as GrpcClient,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { loadEtcdProto } from '../../src/api/proto.js';
import { type Harness, startHarness } from './harness.js';

const TEST_TIMEOUT_MS = 20_000;

type Callback = (err: ServiceError | null, res: Record<string, unknown>) => void;
type Unary = (req: object, md: Metadata, cb: Callback) => void;
type Rpc = Client &
  Record<string, Unary> & {
    Watch(md?: Metadata): ClientDuplexStream<object, Record<string, unknown>>;
    LeaseKeepAlive(): ClientDuplexStream<object, Record<string, unknown>>;
    Snapshot(req: object): ClientReadableStream<Record<string, unknown>>;
  };

function clients(endpoint: string) {
  const pkg = loadPackageDefinition(loadEtcdProto()) as unknown as {
    etcdserverpb: Record<string, ServiceClientConstructor>;
    grpc: { health: { v1: { Health: ServiceClientConstructor } } };
  };
  const make = (ctor: ServiceClientConstructor) =>
    new ctor(endpoint, credentials.createInsecure()) as unknown as Rpc;
  return {
    kv: make(pkg.etcdserverpb.KV!),
    watch: make(pkg.etcdserverpb.Watch!),
    lease: make(pkg.etcdserverpb.Lease!),
    maintenance: make(pkg.etcdserverpb.Maintenance!),
    auth: make(pkg.etcdserverpb.Auth!),
    health: make(pkg.grpc.health.v1.Health),
  };
}

function call(
  client: Rpc,
  method: string,
  req: object,
  md: Metadata = new Metadata(),
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    client[method]!.call(client, req, md, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

function grpcError(code: status, details: string | RegExp) {
  return (e: unknown) => {
    const err = e as ServiceError;
    assert.equal(err.code, code, `code ${err.code} (${err.details})`);
    if (typeof details === 'string') assert.equal(err.details, details);
    else assert.match(err.details, details);
    return true;
  };
}

describe('api edge', { timeout: 60_000 }, () => {
  let h: Harness & { errors: unknown[] };
  let c: ReturnType<typeof clients>;
  let raw: GrpcClient;

  before(async () => {
    h = await startHarness();
    c = clients(h.endpoint);
    raw = new GrpcClient(h.endpoint, credentials.createInsecure());
  });

  after(async () => {
    for (const client of [...Object.values(c), raw]) client.close();
    await h.close();
  });

  /** A unary call with raw bytes, bypassing protobuf encoding. */
  function rawUnary(path: string, bytes: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      raw.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
  }

  test('malformed protobuf is an error status; the server keeps serving', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a]);
    for (const path of [
      '/etcdserverpb.KV/Put',
      '/etcdserverpb.KV/Txn',
      '/etcdserverpb.Lease/LeaseGrant',
    ]) {
      await assert.rejects(
        rawUnary(path, garbage),
        grpcError(status.INTERNAL, 'Error deserializing request'),
      );
    }
    await call(c.kv, 'Put', { key: Buffer.from('alive'), value: Buffer.from('yes') });
    const got = await call(c.kv, 'Range', { key: Buffer.from('alive') });
    assert.equal((got.kvs as { value: Buffer }[])[0]!.value.toString(), 'yes');
    assert.deepEqual(h.errors, []);
  });

  test('a message over the gRPC limit is RESOURCE_EXHAUSTED; just over the request limit is etcd\'s "too large"', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const huge = Buffer.alloc(3 * 1024 * 1024, 7);
    await assert.rejects(
      call(c.kv, 'Put', { key: Buffer.from('huge'), value: huge }),
      grpcError(status.RESOURCE_EXHAUSTED, /larger than max/),
    );
    const big = Buffer.alloc(1.5 * 1024 * 1024 + 100, 7);
    await assert.rejects(
      call(c.kv, 'Put', { key: Buffer.from('big'), value: big }),
      grpcError(status.INVALID_ARGUMENT, 'etcdserver: request is too large'),
    );
    await call(c.kv, 'Put', { key: Buffer.from('small'), value: Buffer.from('ok') });
  });

  test('bad fields and metadata are INVALID_ARGUMENT naming them', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    await assert.rejects(
      call(c.kv, 'Range', { key: Buffer.from('a'), revision: -3 }),
      grpcError(status.INVALID_ARGUMENT, /RangeRequest\.revision must not be negative/),
    );
    await assert.rejects(
      call(c.kv, 'Range', { key: Buffer.from('a'), sortOrder: 9 }),
      grpcError(status.INVALID_ARGUMENT, 'etcdserver: invalid sort option'),
    );
    await assert.rejects(
      call(c.kv, 'Range', { key: Buffer.alloc(0) }),
      grpcError(status.INVALID_ARGUMENT, 'etcdserver: key is not provided'),
    );
    await assert.rejects(
      call(c.kv, 'Txn', { compare: [{ key: Buffer.from('a'), result: 42 }] }),
      grpcError(status.INVALID_ARGUMENT, /TxnRequest\.compare\[0\]\.result/),
    );
    const md = new Metadata();
    md.set('tandem-consistency', 'eventual');
    await assert.rejects(
      call(c.kv, 'Range', { key: Buffer.from('a') }, md),
      grpcError(status.INVALID_ARGUMENT, /tandem-consistency/),
    );
    const bounded = new Metadata();
    bounded.set('tandem-max-staleness-ms', '100');
    await call(c.kv, 'Range', { key: Buffer.from('a') }, bounded);
  });

  test("future and compacted revisions are etcd's OUT_OF_RANGE errors", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    await assert.rejects(
      call(c.kv, 'Range', { key: Buffer.from('a'), revision: 1_000_000 }),
      grpcError(status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'),
    );
  });

  test('leases: unknown ids are NOT_FOUND; a keep-alive of one answers TTL 0', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    await assert.rejects(
      call(c.lease, 'LeaseRevoke', { ID: '777' }),
      grpcError(status.NOT_FOUND, 'etcdserver: requested lease not found'),
    );
    const ttl = await call(c.lease, 'LeaseTimeToLive', { ID: '777' });
    assert.equal(ttl.TTL, '-1');
    const granted = await call(c.lease, 'LeaseGrant', { TTL: 10, ID: '9223372036854775807' });
    assert.equal(granted.ID, '9223372036854775807');
    await assert.rejects(
      call(c.lease, 'LeaseGrant', { TTL: 10, ID: '9223372036854775807' }),
      grpcError(status.FAILED_PRECONDITION, 'etcdserver: lease already exists'),
    );
    const stream = c.lease.LeaseKeepAlive();
    const answers: Record<string, unknown>[] = [];
    const two = new Promise<void>((resolve) =>
      stream.on('data', (res) => answers.push(res) === 2 && resolve()),
    );
    stream.write({ ID: '777' });
    stream.write({ ID: '9223372036854775807' });
    await two;
    stream.end();
    assert.deepEqual(
      answers.map((a) => [a.ID, a.TTL]),
      [
        ['777', '0'],
        ['9223372036854775807', '10'],
      ],
    );
  });

  test('auth answers as a fresh etcd with auth disabled', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const s = await call(c.auth, 'AuthStatus', {});
    assert.equal(s.enabled, false);
    await assert.rejects(
      call(c.auth, 'Authenticate', { name: 'root', password: 'x' }),
      grpcError(status.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled'),
    );
    await assert.rejects(
      call(c.auth, 'UserGet', { name: 'bob' }),
      grpcError(status.FAILED_PRECONDITION, 'etcdserver: user name not found'),
    );
    assert.deepEqual((await call(c.auth, 'UserList', {})).users, []);
    await assert.rejects(
      call(c.auth, 'UserAdd', { name: 'bob' }),
      grpcError(status.UNIMPLEMENTED, /tandem/),
    );
  });

  test('gRPC health: SERVING for the server and etcd services, NOT_FOUND otherwise', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    assert.equal((await call(c.health, 'Check', { service: '' })).status, 1);
    assert.equal((await call(c.health, 'Check', { service: 'etcdserverpb.KV' })).status, 1);
    await assert.rejects(
      call(c.health, 'Check', { service: 'nope' }),
      grpcError(status.NOT_FOUND, 'unknown service'),
    );
  });

  test('watch under backpressure: a client that stops reading gets every event, in order, later', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const KEYS = 1500;
    const value = Buffer.alloc(2048, 1);
    const stream = c.watch.Watch();
    const revisions: number[] = [];
    stream.on('error', () => {}); // the cancel at the end
    let created = false;
    stream.on('data', (res: Record<string, unknown>) => {
      if (res.created) created = true;
      for (const e of res.events as { kv: { modRevision: string } }[]) {
        revisions.push(Number(e.kv.modRevision));
      }
    });
    stream.write({ createRequest: { key: Buffer.from('bp/'), rangeEnd: Buffer.from('bp0') } });
    while (!created) await new Promise((r) => setTimeout(r, 10));
    stream.pause(); // stop reading: HTTP/2 flow control pushes back on the server
    let first = 0;
    for (let i = 0; i < KEYS; i++) {
      const res = await call(c.kv, 'Put', { key: Buffer.from(`bp/${i % 50}`), value });
      if (i === 0) first = Number((res.header as { revision: string }).revision);
    }
    const stats = h.backend.hub.stats();
    if (process.env.TANDEM_TEST_LOG)
      process.stderr.write(`${JSON.stringify({ stats, got: revisions.length })}\n`);
    assert.ok(
      stats.victims + stats.unsynced > 0 || revisions.length < KEYS,
      'the slow client was held back',
    );
    stream.resume();
    const deadline = Date.now() + 10_000;
    while (revisions.length < KEYS && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(revisions.length, KEYS);
    assert.deepEqual(
      revisions,
      Array.from({ length: KEYS }, (_, i) => first + i),
    );
    stream.cancel();
  });

  test('hasleader: true (WithRequireLeader) refuses unary calls and watches without a leader', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const requireLeader = new Metadata();
    requireLeader.set('hasleader', 'true');
    const noLeader = grpcError(status.UNAVAILABLE, 'etcdserver: no leader');
    const watchError = (stream: ClientDuplexStream<object, Record<string, unknown>>) =>
      new Promise<ServiceError>((resolve) => stream.on('error', resolve));
    // With a leader, the metadata changes nothing.
    await call(c.kv, 'Range', { key: Buffer.from('hl') }, requireLeader);
    const watched = c.watch.Watch(requireLeader);
    const plain = c.watch.Watch();
    plain.on('error', () => {});
    const created = (stream: ClientDuplexStream<object, Record<string, unknown>>) =>
      new Promise((resolve) => stream.once('data', resolve));
    const lost = watchError(watched);
    const both = Promise.all([created(watched), created(plain)]);
    watched.write({ createRequest: { key: Buffer.from('hl') } });
    plain.write({ createRequest: { key: Buffer.from('hl') } });
    await both;
    try {
      // The member loses its leader (for monitorLeader's span): the watch that asked is ended.
      h.backend.loseLeader();
      noLeader(await lost);
      await assert.rejects(
        call(c.kv, 'Range', { key: Buffer.from('hl') }, requireLeader),
        noLeader,
      );
      await assert.rejects(call(c.maintenance, 'Alarm', { action: 0 }, requireLeader), noLeader);
      await call(c.kv, 'Range', { key: Buffer.from('hl') }); // without the metadata: served
      noLeader(await watchError(c.watch.Watch(requireLeader)));
      // The watch that did not ask still streams.
      const event = new Promise((resolve) => plain.once('data', resolve));
      await call(c.kv, 'Put', { key: Buffer.from('hl'), value: Buffer.from('v') });
      assert.ok(((await event) as { events: unknown[] }).events.length === 1);
    } finally {
      h.backend.leader = true;
      plain.cancel();
    }
  });

  test('Alarm ACTIVATE, GET, DEACTIVATE; Hash; HashKV refuses compacted and future revisions', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const member = '18446744073709551615'; // uint64 max: ids travel exactly
    const nospace = { memberID: member, alarm: 1 }; // NOSPACE
    const alarms = async (action: number, alarm = 1) =>
      (await call(c.maintenance, 'Alarm', { action, memberID: member, alarm })).alarms;
    assert.deepEqual(await alarms(1), [nospace]);
    assert.deepEqual(await alarms(1), [nospace], 'raised twice: the raised one');
    assert.deepEqual(await alarms(0, 0), [nospace], 'GET of NONE lists every type');
    assert.deepEqual(await alarms(2), [nospace]);
    assert.deepEqual(await alarms(2), [], 'cleared twice: nothing');
    assert.deepEqual(await alarms(0, 0), []);
    const hash = await call(c.maintenance, 'Hash', {});
    assert.equal(typeof hash.hash, 'number');
    for (let i = 0; i < 3; i++)
      await call(c.kv, 'Put', { key: Buffer.from('hk'), value: Buffer.from(`${i}`) });
    const range = await call(c.kv, 'Range', { key: Buffer.from('hk') });
    const rev = Number((range.header as { revision: string }).revision);
    const at = (revision: number) => call(c.maintenance, 'HashKV', { revision });
    assert.notEqual((await at(rev - 1)).hash, (await at(rev)).hash);
    assert.equal((await at(rev)).hash, (await at(0)).hash, '0 = the current revision');
    await assert.rejects(
      at(rev + 1),
      grpcError(status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'),
    );
    await call(c.kv, 'Compact', { revision: rev - 1 });
    await at(rev - 1); // at the compact revision: allowed
    await assert.rejects(
      at(rev - 2),
      grpcError(status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted'),
    );
  });

  test('watch: created, progress, cancel; an empty request is ignored', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const stream = c.watch.Watch();
    const responses: Record<string, unknown>[] = [];
    const waitFor = async (n: number) => {
      const deadline = Date.now() + 5_000;
      while (responses.length < n && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 10));
      assert.ok(responses.length >= n, `got ${responses.length} of ${n} responses`);
    };
    stream.on('data', (res) => responses.push(res));
    stream.on('error', () => {});
    stream.write({});
    stream.write({ createRequest: { key: Buffer.from('pw'), watchId: 5 } });
    await waitFor(1);
    assert.equal(responses[0]!.created, true);
    assert.equal(responses[0]!.watchId, '5');
    stream.write({ progressRequest: {} });
    await waitFor(2);
    assert.equal(responses[1]!.watchId, '-1');
    stream.write({ cancelRequest: { watchId: 5 } });
    await waitFor(3);
    assert.equal(responses[2]!.canceled, true);
    // A duplicate id is refused as etcd refuses it: created + canceled with a reason.
    stream.write({ createRequest: { key: Buffer.from('a'), watchId: 6 } });
    stream.write({ createRequest: { key: Buffer.from('a'), watchId: 6 } });
    await waitFor(5);
    assert.equal(responses[4]!.canceled, true);
    assert.match(String(responses[4]!.cancelReason), /duplicate watch ID/);
    stream.cancel();
  });

  test('snapshot: 32 KiB messages, remaining_bytes to 0, padded, SHA-256 last', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    for (let i = 0; i < 200; i++) {
      await call(c.kv, 'Put', { key: Buffer.from(`snap/${i}`), value: Buffer.alloc(1024, i) });
    }
    const blobs: Buffer[] = [];
    const remaining: number[] = [];
    let headers = 0;
    await new Promise<void>((resolve, reject) => {
      const s = c.maintenance.Snapshot({});
      s.on('data', (res: Record<string, unknown>) => {
        blobs.push(res.blob as Buffer);
        remaining.push(Number(res.remainingBytes));
        if (res.header !== null) headers += 1;
      });
      s.on('end', resolve);
      s.on('error', reject);
    });
    assert.equal(headers, 1, 'the first message carries the header');
    assert.ok(blobs.every((b) => b.length <= 32 * 1024));
    assert.equal(remaining.at(-1), 0);
    const data = Buffer.concat(blobs.slice(0, -1));
    assert.equal(data.length % 512, 0);
    assert.deepEqual(createHash('sha256').update(data).digest(), blobs.at(-1));
  });

  test('closing the server ends open watches with "etcdserver: server stopped"', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const own = await startHarness();
    const client = clients(own.endpoint);
    const stream = client.watch.Watch();
    let created = false;
    stream.on('data', (res) => {
      if (res.created) created = true;
    });
    const ended = new Promise<ServiceError>((resolve) => stream.on('error', resolve));
    const healthStatuses: number[] = [];
    const health = (
      client.health as unknown as {
        Watch(req: object): ClientReadableStream<{ status: number }>;
      }
    ).Watch({ service: '' });
    health.on('data', (res) => healthStatuses.push(res.status));
    const healthEnded = new Promise<void>((resolve) => health.on('end', resolve));
    stream.write({ createRequest: { key: Buffer.from('x') } });
    while (!created) await new Promise((r) => setTimeout(r, 10));
    const started = Date.now();
    await own.close();
    const err = await ended;
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(err.details, 'etcdserver: server stopped');
    await healthEnded;
    assert.deepEqual(healthStatuses, [1, 2], 'health watch: SERVING, then NOT_SERVING');
    assert.ok(Date.now() - started < 1_500, 'no wait for the shutdown grace');
    for (const cl of Object.values(client)) cl.close();
    assert.equal(own.backend.hub.stats().streams, 0, 'the watch stream was closed');
  });
});
