/**
 * The TypeScript client and the gateway on secured clusters of real member processes:
 *
 * - TLS on every port (a throwaway CA, dev-certs.ts): the client with the CA and a client
 *   certificate works (put, get, watch); without the CA it cannot connect. `tandem gateway`'s
 *   code with TLS to the members and TLS to its own clients serves the `etcd3` npm client.
 * - etcd auth: the client with a username and password writes what the user may and is refused
 *   the rest; after the user's tokens are invalidated (a password change) it re-authenticates by
 *   itself; through the gateway, a client's own token passes through to the members.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Etcd3, EtcdPermissionDeniedError, Range } from 'etcd3';
import { type LocalCluster, memberEnv, REPO_DIR, tandemArgv } from '../../src/cli/local-cluster.js';
import { freePort, waitFor } from '../../src/cli/local-net.js';
import { LocalProcess } from '../../src/cli/local-process.js';
import { Client, TandemClientError } from '../../src/client/index.js';
import { type RoutingGateway, startGateway } from '../../src/proxy/gateway.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';
import { OPENSSL_MISSING } from './openssl.js';

const TEST_TIMEOUT_MS = 90_000;
const START_TIMEOUT_MS = 180_000;
const SILENT = { debug() {}, info() {}, warn() {} };

describe('client and gateway over TLS', {
  skip: OPENSSL_MISSING,
  timeout: 600_000,
}, () => {
  let c: LocalCluster;
  let tls: { ca: string; cert: string; key: string };
  let endpoints: string[];
  const closers: (() => unknown)[] = [];

  before(async () => {
    c = await startCluster({ label: 'client-tls', tls: true, readyTimeoutMs: START_TIMEOUT_MS });
    const files = c.tls!;
    tls = {
      ca: readFileSync(files.ca, 'utf8'),
      cert: readFileSync(files.cert, 'utf8'),
      key: readFileSync(files.key, 'utf8'),
    };
    endpoints = c.members.map((m) => `https://${m.spec.client}`);
  });

  after(async () => {
    for (const close of closers.reverse()) await close();
    await c?.destroy({ kill: true });
  });

  test('the client with the CA and a client certificate: put, get, watch', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // Bare host:port endpoints: with `tls` they are https.
    const client = await Client.connect({
      endpoints: c.members.map((m) => m.spec.client),
      tls,
      connectTimeoutMs: 30_000,
    });
    closers.push(() => client.close());
    assert.ok(client.status().members.every((m) => m.clientUrl.startsWith('https://')));
    const abort = new AbortController();
    const seen = (async () => {
      for await (const ev of client.watch('tls/', { prefix: true, signal: abort.signal })) {
        return ev.kv.value.toString();
      }
      return null;
    })();
    await new Promise((r) => setTimeout(r, 500));
    const put = await client.put('tls/k', 'secure', { idempotencyKey: true });
    assert.equal((await client.get('tls/k'))?.modRevision, put.revision);
    assert.equal(await seen, 'secure');
    abort.abort();
  });

  test('without the CA the members are not trusted', { timeout: TEST_TIMEOUT_MS }, async () => {
    await assert.rejects(
      Client.connect({
        endpoints,
        tls: { cert: tls.cert, key: tls.key },
        connectTimeoutMs: 3_000,
      }),
      (e: unknown) => e instanceof TandemClientError && e.code === 'UNAVAILABLE',
    );
  });

  test('the gateway: TLS to members and to its clients (the etcd3 client)', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const gateway: RoutingGateway = await startGateway({
      endpoints,
      listen: '127.0.0.1:0',
      logger: SILENT,
      upstreamTls: tls,
      tls: { cert: tls.cert, key: tls.key },
    });
    closers.push(() => gateway.close());
    const etcd = new Etcd3({
      hosts: `https://127.0.0.1:${gateway.port}`,
      credentials: { rootCertificate: Buffer.from(tls.ca) },
    });
    closers.push(() => etcd.close());
    await etcd.put('tls/g').value('via gateway');
    assert.equal(await etcd.get('tls/g').string(), 'via gateway');
    // Plain text is not served on the gateway's TLS port.
    const plain = new Etcd3({ hosts: `http://127.0.0.1:${gateway.port}` });
    closers.push(() => plain.close());
    await assert.rejects(
      Promise.race([
        plain.get('tls/g').string(),
        new Promise((_r, reject) => setTimeout(() => reject(new Error('no answer')), 10_000)),
      ]),
    );
  });

  test('`tandem gateway` with its TLS flags, as a process', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const files = c.tls!;
    const port = await freePort();
    const proc = new LocalProcess({
      label: 'gateway',
      argv: [
        ...tandemArgv('source'),
        'gateway',
        '--endpoints',
        endpoints.join(','),
        '--listen',
        `127.0.0.1:${port}`,
        '--cacert',
        files.ca,
        '--cert',
        files.cert,
        '--key',
        files.key,
        '--listen-cert',
        files.cert,
        '--listen-key',
        files.key,
      ],
      env: { ...memberEnv(process.env), TANDEM_LOG_LEVEL: 'warn' },
      cwd: REPO_DIR,
      logFile: join(c.dir, 'gateway.log'),
    });
    proc.spawn();
    closers.push(() => (proc.state === 'down' ? undefined : proc.kill()));
    const etcd = new Etcd3({
      hosts: `https://127.0.0.1:${port}`,
      credentials: { rootCertificate: Buffer.from(tls.ca) },
      defaultCallOptions: () => ({ deadline: Date.now() + 3_000 }),
    });
    closers.push(() => etcd.close());
    await waitFor('the gateway to serve over TLS', 60_000, async () => {
      if (proc.state === 'down') throw new Error(`gateway exited: ${proc.exitDescription()}`);
      return etcd
        .put('tls/cli')
        .value('via tandem gateway')
        .then(
          () => true,
          () => null,
        );
    });
    assert.equal(await etcd.get('tls/cli').string(), 'via tandem gateway');
  });
});

describe('client and gateway with etcd auth', { timeout: 600_000 }, () => {
  let c: LocalCluster;
  let admin: Etcd3;
  const closers: (() => unknown)[] = [];

  before(async () => {
    c = await startCluster({ label: 'client-auth', readyTimeoutMs: START_TIMEOUT_MS });
    admin = new Etcd3({ hosts: c.endpoints().map((h) => `http://${h}`) });
    await admin.put('w/seed').value('0');
    await admin.put('secret').value('s');
    await admin.user('root').create('rootpw');
    await admin.role('root').create();
    await admin.user('root').addRole('root');
    await admin.user('alice').create('alicepw');
    await admin.role('writer').create();
    await admin.role('writer').grant({ permission: 'Readwrite', range: Range.prefix('w/') });
    await admin.user('alice').addRole('writer');
    const conn = grpcClients(c.members[0]!.spec.client);
    try {
      await call(conn.auth, 'AuthEnable', {}, 10_000);
    } finally {
      conn.close();
    }
    admin.close();
  });

  after(async () => {
    for (const close of closers.reverse()) await close();
    await c?.destroy({ kill: true });
  });

  test('the client authenticates, is held to its permissions, re-authenticates when its token is invalidated', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const endpoints = c.endpoints();
    const alice = await Client.connect({
      endpoints,
      auth: { username: 'alice', password: 'alicepw' },
      connectTimeoutMs: 30_000,
    });
    closers.push(() => alice.close());
    await alice.put('w/a', '1', { idempotencyKey: true });
    assert.equal((await alice.get('w/a'))?.value.toString(), '1');
    await assert.rejects(
      alice.put('secret', 'x'),
      (e: unknown) => e instanceof TandemClientError && e.code === 'PERMISSION_DENIED',
    );
    await assert.rejects(
      Client.connect({ endpoints, auth: { username: 'alice', password: 'wrong' } }),
      (e: unknown) => e instanceof TandemClientError && e.code === 'AUTH_FAILED',
    );
    // Without credentials a write is refused.
    const anonymous = await Client.connect({ endpoints });
    closers.push(() => anonymous.close());
    await assert.rejects(anonymous.put('w/b', '1'), TandemClientError);

    // A password change (to the same password) invalidates alice's tokens on every member.
    const root = new Etcd3({
      hosts: endpoints.map((h) => `http://${h}`),
      auth: { username: 'root', password: 'rootpw' },
    });
    closers.push(() => root.close());
    await root.user('alice').setPassword('alicepw');
    await alice.put('w/a', '2');
    assert.equal((await alice.get('w/a'))?.value.toString(), '2');
  });

  test("through the gateway a client's own token reaches the members", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const gateway = await startGateway({
      endpoints: c.endpoints(),
      listen: '127.0.0.1:0',
      logger: SILENT,
    });
    closers.push(() => gateway.close());
    const host = `http://127.0.0.1:${gateway.port}`;
    const alice = new Etcd3({ hosts: host, auth: { username: 'alice', password: 'alicepw' } });
    closers.push(() => alice.close());
    await alice.put('w/g').value('via gateway');
    assert.equal(await alice.get('w/g').string(), 'via gateway');
    await assert.rejects(alice.put('secret').value('x').exec(), EtcdPermissionDeniedError);
  });
});
