/**
 * etcd's auth on a real 3-member cluster: set up with the `etcd3` npm client's own user and role
 * API, then the etcd3 client with `auth: { username, password }` (allowed and denied reads and
 * writes, a wrong password), raw gRPC for what etcd3 does not expose (AuthEnable, AuthStatus, a
 * token made on one member used on the others), and the auth store replicated: equal on every
 * member, kept across a kill -9 and restart, and carried by a Raft snapshot to a member that
 * was down while the log was compacted past it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  type IOptions,
  Range,
} from 'etcd3';
import {
  type LocalCluster,
  type LocalMember,
  REPO_DIR,
  tandemArgv,
} from '../../src/cli/local-cluster.js';
import { waitFor } from '../../src/cli/local-net.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

const TEST_TIMEOUT_MS = 60_000;
const CALL_DEADLINE_MS = 5_000;
const MEMBER_START_TIMEOUT_MS = 30_000;
/** The cluster snapshots (and compacts) every this many entries (the config's minimum). */
const SNAPSHOT_ENTRIES = 100;

function client(hosts: readonly string[], auth?: IOptions['auth']): Etcd3 {
  return new Etcd3({
    hosts: hosts.map((h) => `http://${h}`),
    ...(auth !== undefined && { auth }),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
  });
}

/** The tandem CLI from source: its exit code and output, never a throw. */
async function runTandem(args: readonly string[]) {
  const argv = tandemArgv('source');
  return promisify(execFile)(argv[0]!, [...argv.slice(1), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    cwd: REPO_DIR,
    env: { ...process.env, TANDEM_TOKEN: '' },
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
}

describe('auth on a 3-member cluster', { timeout: 300_000 }, () => {
  let c: LocalCluster;
  const clients: Etcd3[] = [];
  const open = (hosts: readonly string[], auth?: IOptions['auth']): Etcd3 => {
    const e = client(hosts, auth);
    clients.push(e);
    return e;
  };
  const raw = (m: LocalMember) => grpcClients(m.spec.client);
  /** One raw Auth call to member `m`, with an optional token. */
  async function authCall(
    m: LocalMember,
    method: string,
    req: object,
    token?: string,
  ): Promise<Record<string, unknown>> {
    const conn = raw(m);
    try {
      return await call(conn.auth, method, req, CALL_DEADLINE_MS, token ? { token } : {});
    } finally {
      conn.close();
    }
  }
  async function rangeWith(m: LocalMember, key: string, token: string) {
    const conn = raw(m);
    try {
      return await call(conn.kv, 'Range', { key: Buffer.from(key) }, CALL_DEADLINE_MS, { token });
    } finally {
      conn.close();
    }
  }
  const statusOf = async (m: LocalMember) => {
    const r = await authCall(m, 'AuthStatus', {});
    return { enabled: r.enabled, authRevision: String(r.authRevision) };
  };

  before(async () => {
    c = await startCluster({
      label: 'auth',
      extraConfig: { raft: { snapshotEntries: SNAPSHOT_ENTRIES } },
    });
    // Set up through etcd3's own user and role API, with auth still off.
    const admin = open(c.endpoints());
    await admin.put('w/seed').value('0');
    await admin.put('secret').value('s');
    await admin.user('root').create('rootpw');
    await admin.role('root').create();
    await admin.user('root').addRole('root');
    await admin.user('alice').create('alicepw');
    await admin.role('writer').create();
    await admin.role('writer').grant({ permission: 'Readwrite', range: Range.prefix('w/') });
    await admin.role('writer').grant({ permission: 'Read', key: 'public' });
    await admin.user('alice').addRole('writer');
    await authCall(c.members[0]!, 'AuthEnable', {});
  });

  after(async () => {
    for (const e of clients) e.close();
    await c?.destroy({ kill: true });
  });

  test(
    'etcd3 with auth: allowed puts and gets pass, others are denied as etcd denies them',
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('etcd3 auth', async () => {
        const alice = open(c.endpoints(), { username: 'alice', password: 'alicepw' });
        await alice.put('w/a').value('1');
        assert.equal(await alice.get('w/a').string(), '1');
        assert.deepEqual(await alice.getAll().prefix('w/').strings(), {
          'w/a': '1',
          'w/seed': '0',
        });
        await assert.rejects(alice.put('secret').value('x').exec(), EtcdPermissionDeniedError);
        await assert.rejects(alice.get('secret').string(), EtcdPermissionDeniedError);
        await assert.rejects(alice.put('public').value('x').exec(), EtcdPermissionDeniedError);
        await assert.rejects(alice.getAll().prefix('').strings(), EtcdPermissionDeniedError);
        await assert.rejects(alice.user('bob').create('pw'), EtcdPermissionDeniedError);
        const root = open(c.endpoints(), { username: 'root', password: 'rootpw' });
        assert.equal(await root.get('secret').string(), 's');
        const wrong = open(c.endpoints(), { username: 'alice', password: 'nope' });
        await assert.rejects(wrong.get('w/a').string(), EtcdAuthenticationFailedError);
        const anonymous = open(c.endpoints());
        await assert.rejects(anonymous.get('w/a').string(), /user name is empty/);
      }),
  );

  test('watches and leases are checked as etcd checks them', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('watch and lease', async () => {
      const alice = open(c.endpoints(), { username: 'alice', password: 'alicepw' });
      const root = open(c.endpoints(), { username: 'root', password: 'rootpw' });
      // A permitted watch sees writes; a watch on a key alice may not read is refused.
      const watcher = await alice.watch().prefix('w/watched/').create();
      const seen = new Promise<string>((resolve) =>
        watcher.on('put', (kv) => resolve(kv.value.toString())),
      );
      await root.put('w/watched/1').value('x');
      assert.equal(await seen, 'x');
      await watcher.cancel();
      await assert.rejects(alice.watch().key('secret').create(), /permission denied/);
      // LeaseRevoke needs write on every attached key; TimeToLive with keys needs read on each.
      const lease = root.lease(60, { autoKeepAlive: false });
      await lease.put('w/leased').value('1');
      await lease.put('secret-leased').value('1');
      const id = await lease.grant();
      const conn = grpcClients(c.members[1]!.spec.client);
      try {
        const { token } = (await call(conn.auth, 'Authenticate', {
          name: 'alice',
          password: 'alicepw',
        })) as { token: string };
        await assert.rejects(
          call(conn.lease, 'LeaseTimeToLive', { ID: id, keys: true }, CALL_DEADLINE_MS, { token }),
          /permission denied/,
        );
        const ttl = await call(
          conn.lease,
          'LeaseTimeToLive',
          { ID: id, keys: false },
          CALL_DEADLINE_MS,
          { token },
        );
        assert.ok(Number(ttl.TTL) > 0, JSON.stringify(ttl));
        await assert.rejects(
          call(conn.lease, 'LeaseRevoke', { ID: id }, CALL_DEADLINE_MS, { token }),
          /permission denied/,
        );
        assert.equal(await root.get('w/leased').string(), '1');
      } finally {
        conn.close();
      }
      await lease.revoke();
      assert.equal(await root.get('w/leased').string(), null);
    }),
  );

  test('a token made on one member is honoured by the others', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('token across members', async () => {
      const [n1, n2, n3] = c.members as [LocalMember, LocalMember, LocalMember];
      const { token } = (await authCall(n1, 'Authenticate', {
        name: 'alice',
        password: 'alicepw',
      })) as {
        token: string;
      };
      assert.match(token, /^[A-Za-z]{16}\.\d+$/);
      for (const m of [n2, n3, n1]) {
        const r = (await rangeWith(m, 'w/seed', token)) as { kvs: { value: Buffer }[] };
        assert.equal(r.kvs[0]!.value.toString(), '0', m.name);
        await assert.rejects(rangeWith(m, 'secret', token), /permission denied/);
      }
      await assert.rejects(rangeWith(n2, 'w/seed', `${token}x`), /invalid auth token/);
    }),
  );

  test(
    'the JSON gateway: /v3/auth/authenticate, then the Authorization header, on another member',
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('gateway', async () => {
        const [n1, n2] = c.members as [LocalMember, LocalMember];
        const post = async (m: LocalMember, path: string, body: object, token?: string) => {
          const res = await fetch(`http://${m.spec.client}${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...(token && { authorization: token }) },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(CALL_DEADLINE_MS),
          });
          return { status: res.status, body: (await res.json()) as Record<string, unknown> };
        };
        const auth = await post(n1, '/v3/auth/authenticate', {
          name: 'alice',
          password: 'alicepw',
        });
        assert.equal(auth.status, 200, JSON.stringify(auth.body));
        const token = auth.body.token as string;
        const key = Buffer.from('w/seed').toString('base64');
        const ok = await post(n2, '/v3/kv/range', { key }, token);
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        assert.equal(
          Buffer.from((ok.body.kvs as { value: string }[])[0]!.value, 'base64').toString(),
          '0',
        );
        const denied = await post(
          n2,
          '/v3/kv/range',
          { key: Buffer.from('secret').toString('base64') },
          token,
        );
        assert.match(JSON.stringify(denied.body), /etcdserver: permission denied/);
        const anonymous = await post(n2, '/v3/kv/range', { key });
        assert.match(JSON.stringify(anonymous.body), /etcdserver: user name is empty/);
        const users = await post(n1, '/v3/auth/user/list', {}, token);
        assert.match(JSON.stringify(users.body), /etcdserver: permission denied/);
      }),
  );

  test(
    "the admin endpoint: acting and reading keys need root's token (401 otherwise)",
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('admin', async () => {
        const n1 = c.members[0]!;
        const tokenOf = async (name: string, password: string) => {
          const res = await fetch(`http://${n1.spec.client}/v3/auth/authenticate`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ name, password }),
            signal: AbortSignal.timeout(CALL_DEADLINE_MS),
          });
          return ((await res.json()) as { token: string }).token;
        };
        const admin = async (method: string, path: string, token?: string) => {
          const res = await fetch(`http://${n1.spec.admin}${path}`, {
            method,
            headers: {
              ...(method === 'POST' && { 'content-type': 'application/json' }),
              ...(token && { authorization: token }),
            },
            ...(method === 'POST' && { body: JSON.stringify({ name: 'nobody' }) }),
            signal: AbortSignal.timeout(CALL_DEADLINE_MS),
          });
          return {
            status: res.status,
            text: await res.text(),
            connection: res.headers.get('connection'),
          };
        };
        const alice = await tokenOf('alice', 'alicepw');
        const root = await tokenOf('root', 'rootpw');
        for (const [method, path] of [
          ['POST', '/member/promote'],
          ['POST', '/leader/move'],
          ['GET', '/dashboard/api/kv?prefix=w%2F'],
        ] as const) {
          const anonymous = await admin(method, path);
          assert.equal(anonymous.status, 401, `${path} without a token: ${anonymous.text}`);
          assert.match(anonymous.text, /user name is empty/);
          // The refusal closes the connection (the body is not read) and says so first.
          assert.equal(anonymous.connection, 'close');
          const notRoot = await admin(method, path, alice);
          assert.equal(notRoot.status, 401, `${path} as alice: ${notRoot.text}`);
          assert.match(notRoot.text, /permission denied/);
          assert.equal(notRoot.connection, 'close');
          const asRoot = await admin(method, path, `Bearer ${root}`);
          assert.notEqual(asRoot.status, 401, `${path} as root: ${asRoot.text}`);
        }
        // Reading status and metrics stays open (monitoring), as on etcd's metrics port.
        assert.equal((await admin('GET', '/status')).status, 200);
        // The CLI takes the token: refused without it, let through (then refused by the policy:
        // no member "nobody") with it.
        const cli = (extra: string[]) =>
          runTandem(['member', 'promote', 'nobody', '--admin', n1.spec.admin, ...extra]);
        const refused = await cli([]);
        assert.match(refused.stderr, /user name is empty/);
        const through = await cli(['--token', root]);
        assert.doesNotMatch(through.stderr, /user name is empty|permission denied/);
        assert.match(through.stderr, /nobody/);
      }),
  );

  test(
    'the store is the same on every member, and survives a kill -9 and restart',
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('restart', async () => {
        await c.waitForCatchUp();
        const want = await statusOf(c.members[0]!);
        assert.equal(want.enabled, true);
        for (const m of c.members) assert.deepEqual(await statusOf(m), want, m.name);
        const n3 = c.members[2]!;
        await n3.kill();
        n3.spawn();
        await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
        await c.waitForCatchUp();
        assert.deepEqual(await statusOf(n3), want);
        // Its tokens were in memory: a client re-authenticates (etcd3 does on "invalid auth token").
        const alice = open([n3.spec.client], { username: 'alice', password: 'alicepw' });
        assert.equal(await alice.get('w/seed').string(), '0');
        await assert.rejects(alice.get('secret').string(), EtcdPermissionDeniedError);
      }),
  );

  test('a member that missed auth changes gets them in a Raft snapshot', { timeout: 120_000 }, () =>
    c.guard('snapshot', async () => {
      const n2 = c.members[1]!;
      const others = c.members.filter((m) => m !== n2);
      await n2.kill();
      const root = open(
        others.map((m) => m.spec.client),
        { username: 'root', password: 'rootpw' },
      );
      await root.user('carol').create('carolpw');
      await root.role('reader').create();
      await root.role('reader').grant({ permission: 'Read', key: 'secret' });
      await root.user('carol').addRole('reader');
      // Enough entries that the others snapshot and compact their logs past n2's.
      for (let i = 0; i < 3 * SNAPSHOT_ENTRIES; i++)
        await root.put(`w/fill/${i % 10}`).value(String(i));
      const want = await statusOf(others[0]!);
      const logBefore = n2.log().length;
      n2.spawn();
      await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
      await waitFor('n2 to install a snapshot', MEMBER_START_TIMEOUT_MS, async () =>
        /snapshot received/.test(n2.log().slice(logBefore)) ? true : null,
      );
      await c.waitForCatchUp();
      assert.deepEqual(await statusOf(n2), want);
      const carol = open([n2.spec.client], { username: 'carol', password: 'carolpw' });
      assert.equal(await carol.get('secret').string(), 's');
      await assert.rejects(carol.put('secret').value('x').exec(), EtcdPermissionDeniedError);
    }),
  );
});

describe('JWT tokens on a 3-member cluster', { timeout: 200_000 }, () => {
  let c: LocalCluster;
  let dir: string;
  const clients: Etcd3[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-jwt-'));
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyFile = join(dir, 'jwt.key');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    c = await startCluster({
      label: 'auth-jwt',
      extraConfig: { auth: { jwt: { signMethod: 'ES256', privateKey: keyFile, ttl: '5m' } } },
    });
    const admin = new Etcd3({ hosts: c.endpoints().map((h) => `http://${h}`) });
    clients.push(admin);
    await admin.put('k').value('v');
    await admin.user('root').create('rootpw');
    await admin.role('root').create();
    await admin.user('root').addRole('root');
    await admin.user('alice').create('alicepw');
    await admin.role('r').create();
    await admin.role('r').grant({ permission: 'Read', key: 'k' });
    await admin.user('alice').addRole('r');
    const conn = grpcClients(c.members[0]!.spec.client);
    try {
      await call(conn.auth, 'AuthEnable', {});
    } finally {
      conn.close();
    }
  });

  after(async () => {
    for (const e of clients) e.close();
    await c?.destroy({ kill: true });
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    'a JWT from one member is verified by the others; a store change makes it old',
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('jwt', async () => {
        const [n1, n2, n3] = c.members as [LocalMember, LocalMember, LocalMember];
        const conns = c.members.map((m) => grpcClients(m.spec.client));
        try {
          const { token } = (await call(conns[0]!.auth, 'Authenticate', {
            name: 'alice',
            password: 'alicepw',
          })) as { token: string };
          assert.equal(token.split('.').length, 3, token);
          for (const conn of conns) {
            const r = (await call(conn.kv, 'Range', { key: Buffer.from('k') }, CALL_DEADLINE_MS, {
              token,
            })) as { kvs: { value: Buffer }[] };
            assert.equal(r.kvs[0]!.value.toString(), 'v');
          }
          const root = new Etcd3({
            hosts: [n3.spec.client].map((h) => `http://${h}`),
            auth: { username: 'root', password: 'rootpw' },
          });
          clients.push(root);
          await root.role('other').create();
          await c.waitForCatchUp();
          await assert.rejects(
            call(conns[1]!.kv, 'Range', { key: Buffer.from('k') }, CALL_DEADLINE_MS, { token }),
            /revision of auth store is old/,
          );
          const forged = `${token.slice(0, -4)}AAAA`;
          await assert.rejects(
            call(conns[1]!.kv, 'Range', { key: Buffer.from('k') }, CALL_DEADLINE_MS, {
              token: forged,
            }),
            /invalid auth token/,
          );
          // etcdctl (clientv3) re-authenticates on an old revision, as with etcd.
          const alice = new Etcd3({
            hosts: [n1.spec.client, n2.spec.client].map((h) => `http://${h}`),
            auth: { username: 'alice', password: 'alicepw' },
          });
          clients.push(alice);
          assert.equal(await alice.get('k').string(), 'v');
        } finally {
          for (const conn of conns) conn.close();
        }
      }),
  );
});
