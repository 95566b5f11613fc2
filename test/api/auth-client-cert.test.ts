/**
 * etcd's --client-cert-auth with auth enabled: a call with no token is made as the user named by
 * its verified client certificate's CN (etcd's AuthInfoFromTLS), over real TLS with the etcd3
 * client. The auth store is the real one (src/kv/auth), behind the test backend.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Etcd3, EtcdPermissionDeniedError } from 'etcd3';
import { type ApiServer, startApiServer } from '../../src/api/server.js';
import { type AuthOp, AuthStore, NO_CREDENTIALS, PermType } from '../../src/kv/auth/index.js';
import type { AuthBackend } from '../../src/server/contract.js';
import { TestBackend, testLogger } from './harness.js';
import { makeTestPki } from './pki.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}
const MISSING = !hasOpenssl() && 'needs openssl to make test certificates (Debian openssl)';
const enc = new TextEncoder();

/** The test backend with a real, enabled auth store: alice may read and write a/…, nothing else. */
class AuthTestBackend extends TestBackend {
  readonly store = new AuthStore();
  readonly auth: AuthBackend = {
    store: () => this.store,
    propose: () => Promise.reject(new Error('not in this test')),
    authenticate: () => Promise.reject(new Error('not in this test')),
    barrier: () => Promise.resolve(),
    simpleTokenUser: () => Promise.resolve(null),
    leaseKeys: () => [],
  };

  constructor() {
    super();
    const ops: AuthOp[] = [
      { op: 'userAdd', name: 'root', passwordHash: '', noPassword: true },
      { op: 'userGrantRole', user: 'root', role: 'root' },
      { op: 'userAdd', name: 'alice', passwordHash: '', noPassword: true },
      { op: 'roleAdd', name: 'a-writer' },
      {
        op: 'roleGrantPermission',
        name: 'a-writer',
        perm: { permType: PermType.ReadWrite, key: enc.encode('a/'), rangeEnd: enc.encode('a0') },
      },
      { op: 'userGrantRole', user: 'alice', role: 'a-writer' },
      { op: 'authEnable' },
    ];
    for (const op of ops) this.store.apply(op, NO_CREDENTIALS);
  }
}

describe('client certificate CN as the user', { skip: MISSING, timeout: 30_000 }, () => {
  let dir = '';
  let backend: AuthTestBackend;
  let server: ApiServer;
  const file = (name: string) => readFileSync(join(dir, name));

  const clientAs = (name: string) =>
    new Etcd3({
      hosts: `https://127.0.0.1:${server.port}`,
      credentials: {
        rootCertificate: file('ca.crt'),
        certChain: file(`${name}.crt`),
        privateKey: file(`${name}.key`),
      },
      faultHandling: { global: undefined },
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-api-cn-'));
    makeTestPki(dir, ['server', 'alice', 'mallory']);
    backend = new AuthTestBackend();
    server = await startApiServer({
      backend,
      listen: '127.0.0.1:0',
      logger: testLogger().logger,
      tls: { cert: file('server.crt'), key: file('server.key'), ca: file('ca.crt') },
    });
  });

  after(async () => {
    await server?.close();
    backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('CN=alice may write and read a/ and nothing else', { timeout: 10_000 }, async () => {
    const alice = clientAs('alice');
    try {
      await alice.put('a/1').value('x');
      assert.equal(await alice.get('a/1').string(), 'x');
      await assert.rejects(alice.get('b').string(), EtcdPermissionDeniedError);
      await assert.rejects(alice.put('b').value('x').exec(), EtcdPermissionDeniedError);
    } finally {
      alice.close();
    }
  });

  test('a CN that is no user is denied', { timeout: 10_000 }, async () => {
    const mallory = clientAs('mallory');
    try {
      await assert.rejects(mallory.get('a/1').string(), EtcdPermissionDeniedError);
    } finally {
      mallory.close();
    }
  });
});
