/**
 * A certificate-only client (etcd's --client-cert-auth, no token) whose call a member forwards
 * (a standby forwards every call to a serving member, src/api/standby-forward.ts) runs as the
 * client's CN at the member that answers, not as the forwarding member's certificate name: the
 * forwarding member states the user, proven with the cluster secret (src/api/forwarded-identity.ts).
 * Over real TLS with real certificates (openssl) and the etcd3 client; a forged statement sent
 * straight to the serving member is refused.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  credentials,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { Etcd3, EtcdPermissionDeniedError } from 'etcd3';
import {
  FORWARDED_IDENTITY_AGE_MS_MAX,
  FORWARDED_PROOF_KEY,
  FORWARDED_USER_KEY,
  ForwardedIdentity,
} from '../../src/api/forwarded-identity.js';
import { Status } from '../../src/api/grpc/status.js';
import { loadEtcdProto, serviceDefinition } from '../../src/api/proto.js';
import { type ApiServer, startApiServer } from '../../src/api/server.js';
import { ServerError } from '../../src/server/errors.js';
import { clusterSecret } from '../../src/transport/handshake.js';
import { AuthTestBackend, TestBackend, testLogger } from './harness.js';
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

describe('ForwardedIdentity', () => {
  const secret = clusterSecret(randomBytes(32));
  let nowMs = 1_700_000_000_000;
  const signer = new ForwardedIdentity(secret, () => nowMs);

  test('a statement verifies under the same secret, as the user it names', () => {
    const { user, proof } = signer.sign('alice');
    assert.equal(signer.verify(user, proof), 'alice');
    const unicode = signer.sign('zoë');
    assert.equal(signer.verify(unicode.user, unicode.proof), 'zoë');
  });

  test('another secret, another user, a changed time or a stale proof do not verify', () => {
    const { user, proof } = signer.sign('alice');
    const stranger = new ForwardedIdentity(clusterSecret(randomBytes(32)), () => nowMs);
    assert.equal(stranger.verify(user, proof), null, 'another cluster');
    const root = Buffer.from('root').toString('base64url');
    assert.equal(signer.verify(root, proof), null, 'the proof is for alice');
    const [issued, mac] = proof.split('.') as [string, string];
    assert.equal(signer.verify(user, `${Number(issued) + 1}.${mac}`), null, 'time is signed');
    assert.equal(signer.verify(user, ''), null);
    assert.equal(signer.verify(user, 'x.y'), null);
    nowMs += FORWARDED_IDENTITY_AGE_MS_MAX + 1;
    assert.equal(signer.verify(user, proof), null, 'too old');
    nowMs -= 2 * (FORWARDED_IDENTITY_AGE_MS_MAX + 1);
    assert.equal(signer.verify(user, proof), null, 'too far in the future');
    nowMs += FORWARDED_IDENTITY_AGE_MS_MAX + 1;
    assert.equal(signer.verify(user, proof), 'alice', 'and back in its window');
  });
});

/**
 * A standby: it serves no client calls and forwards them all to `servingUrl`. Its own auth store
 * is off (as a lagging one might be), so every check happens at the serving member.
 */
class StandbyBackend extends TestBackend {
  servingUrl = '';
  private refuse(): never {
    throw new ServerError('STANDBY', 'tandem: a standby serves no client traffic');
  }
  servingClientUrls(): readonly string[] {
    return [this.servingUrl];
  }
  assertServing(): void {
    this.refuse();
  }
  override async range(): Promise<never> {
    this.refuse();
  }
  override async put(): Promise<never> {
    this.refuse();
  }
}

describe('a forwarded call of a certificate-only client', {
  skip: MISSING,
  timeout: 60_000,
}, () => {
  let dir = '';
  let serving: AuthTestBackend;
  let standby: StandbyBackend;
  let servingServer: ApiServer;
  let standbyServer: ApiServer;
  const file = (name: string) => readFileSync(join(dir, name));

  const clientAs = (name: string, port: number) =>
    new Etcd3({
      hosts: `https://127.0.0.1:${port}`,
      credentials: {
        rootCertificate: file('ca.crt'),
        certChain: file(`${name}.crt`),
        privateKey: file(`${name}.key`),
      },
      faultHandling: { global: undefined },
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-api-fwd-'));
    makeTestPki(dir, ['n1', 'n2', 'alice', 'mallory']);
    const secret = clusterSecret(randomBytes(32));
    // The forwarding member's certificate name n2 is a root user too: a call run as it (the bug
    // this guards against) would succeed where alice's must not.
    serving = new AuthTestBackend(['n2']);
    servingServer = await startApiServer({
      backend: serving,
      name: 'n1',
      listen: '127.0.0.1:0',
      logger: testLogger().logger,
      tls: { cert: file('n1.crt'), key: file('n1.key'), ca: file('ca.crt') },
      clusterSecret: secret,
    });
    standby = new StandbyBackend();
    standby.servingUrl = `https://127.0.0.1:${servingServer.port}`;
    standbyServer = await startApiServer({
      backend: standby,
      name: 'n2',
      listen: '127.0.0.1:0',
      logger: testLogger().logger,
      tls: { cert: file('n2.crt'), key: file('n2.key'), ca: file('ca.crt') },
      // What n2 presents when it forwards: its member certificate, CN=n2.
      memberTls: { ca: file('ca.crt'), cert: file('n2.crt'), key: file('n2.key') },
      clusterSecret: secret,
    });
  });

  after(async () => {
    await standbyServer?.close();
    await servingServer?.close();
    standby?.close();
    serving?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('through the standby, CN=alice may write and read a/ and nothing else', async () => {
    const alice = clientAs('alice', standbyServer.port);
    try {
      await alice.put('a/1').value('x');
      assert.equal(await alice.get('a/1').string(), 'x');
      // Run as the standby's certificate name (n2, root here) these would succeed.
      await assert.rejects(alice.put('b').value('x').exec(), EtcdPermissionDeniedError);
      await assert.rejects(alice.get('b').string(), EtcdPermissionDeniedError);
    } finally {
      alice.close();
    }
    // The write went to the serving member.
    assert.equal(await clientAs('alice', servingServer.port).get('a/1').string(), 'x');
  });

  test('through the standby, a CN that is no user is denied', async () => {
    const mallory = clientAs('mallory', standbyServer.port);
    try {
      await assert.rejects(mallory.get('a/1').string(), EtcdPermissionDeniedError);
    } finally {
      mallory.close();
    }
  });

  test('a statement forged by a client, sent straight to a member, is refused', async () => {
    loadEtcdProto();
    const Kv = makeGenericClientConstructor(serviceDefinition('kv'), 'KV');
    const kv = new Kv(
      `127.0.0.1:${servingServer.port}`,
      credentials.createSsl(file('ca.crt'), file('mallory.key'), file('mallory.crt')),
    ) as unknown as Record<
      string,
      (
        req: object,
        md: Metadata,
        opts: object,
        cb: (err: ServiceError | null, res: unknown) => void,
      ) => void
    >;
    const forged = new Metadata();
    forged.set(FORWARDED_USER_KEY, Buffer.from('root').toString('base64url'));
    forged.set(FORWARDED_PROOF_KEY, `${Date.now()}.${randomBytes(32).toString('base64url')}`);
    try {
      const error = await new Promise<ServiceError | null>((resolve) =>
        kv.Range!({ key: Buffer.from('b') }, forged, { deadline: Date.now() + 5_000 }, (err) =>
          resolve(err),
        ),
      );
      assert.ok(error !== null, 'refused');
      assert.equal(error.code, Status.UNAUTHENTICATED);
      assert.match(error.details, /invalid auth token/);
    } finally {
      (kv as unknown as { close(): void }).close();
    }
  });
});
