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
import { AuthTestBackend, testLogger } from './harness.js';
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
