/** Client TLS: with a CA configured, clients must present a certificate it signed (etcd's --client-cert-auth). */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { type ApiServer, startApiServer } from '../../src/api/server.js';
import { TestBackend, testLogger } from './harness.js';
import { makeTestPki } from './pki.js';

const execFileAsync = promisify(execFile);

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

// Skipped, naming the package, where openssl is missing (.ci/run installs it).
const MISSING = !hasOpenssl() && 'needs openssl to make test certificates (Debian openssl)';

describe('client TLS', { skip: MISSING, timeout: 30_000 }, () => {
  let dir = '';
  let backend: TestBackend;
  let server: ApiServer;
  const file = (name: string) => readFileSync(join(dir, name));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-api-tls-'));
    makeTestPki(dir, ['server', 'client']);
    backend = new TestBackend();
    server = await startApiServer({
      backend,
      listen: '127.0.0.1:0',
      logger: testLogger().logger,
      tls: { cert: file('server.crt'), key: file('server.key'), ca: file('ca.crt') },
    });
  });

  after(async () => {
    await server.close();
    backend.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a client with a certificate from the CA is served', { timeout: 10_000 }, async () => {
    const client = new Etcd3({
      hosts: `https://127.0.0.1:${server.port}`,
      credentials: {
        rootCertificate: file('ca.crt'),
        certChain: file('client.crt'),
        privateKey: file('client.key'),
      },
      faultHandling: { global: undefined },
    });
    try {
      await client.put('secure').value('yes');
      assert.equal(await client.get('secure').string(), 'yes');
    } finally {
      client.close();
    }
  });

  test('etcdctl with --cacert/--cert/--key is served', { timeout: 10_000 }, async () => {
    const etcdctl = execFileSync('sh', ['-c', 'command -v etcdctl'], { encoding: 'utf8' }).trim();
    const tlsArgs = [
      `--endpoints=https://127.0.0.1:${server.port}`,
      `--cacert=${join(dir, 'ca.crt')}`,
      `--cert=${join(dir, 'client.crt')}`,
      `--key=${join(dir, 'client.key')}`,
      '--dial-timeout=3s',
    ];
    // Asynchronously: the server runs in this process, a sync child would block it.
    const run = async (args: string[]) =>
      (await execFileAsync(etcdctl, [...tlsArgs, ...args], { encoding: 'utf8', timeout: 8_000 }))
        .stdout;
    assert.equal(await run(['put', 'tls-key', 'v']), 'OK\n');
    assert.equal(await run(['get', 'tls-key', '--print-value-only']), 'v\n');
  });

  test('a client without a certificate is refused', { timeout: 10_000 }, async () => {
    const client = new Etcd3({
      hosts: `https://127.0.0.1:${server.port}`,
      credentials: { rootCertificate: file('ca.crt') },
      faultHandling: { global: undefined },
      grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 50 },
    });
    try {
      await assert.rejects(
        client
          .get('secure')
          .options({ deadline: Date.now() + 2_000 })
          .string(),
      );
    } finally {
      client.close();
    }
  });
});
