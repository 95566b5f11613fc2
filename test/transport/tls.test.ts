import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { MessageType } from '../../src/raft/types.js';
import { parseAddress } from '../../src/transport/address.js';
import type { TransportTlsOptions } from '../../src/transport/tls.js';
import { msg, startNode, waitUntil } from './helpers.js';

/** Skipped, naming the package, where openssl is missing (.ci/run installs it). */
const MISSING = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return false;
  } catch {
    return 'needs openssl to make test certificates (Debian openssl)';
  }
})();

let dir = '';
let good: TransportTlsOptions;
let rogue: TransportTlsOptions;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA and one leaf signed by it, valid for both loopback addresses, as client and server. */
function makePki(name: string): TransportTlsOptions {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-days',
    '1',
    '-subj',
    `/CN=${name}-ca`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
    '-keyout',
    `${name}-ca.key`,
    '-out',
    `${name}-ca.crt`,
  );
  openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  writeFileSync(
    join(dir, `${name}.ext`),
    'subjectAltName=IP:127.0.0.1,IP:127.0.0.2\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${name}-ca.crt`,
    '-CAkey',
    `${name}-ca.key`,
    '-CAcreateserial',
    '-days',
    '1',
    '-out',
    `${name}.crt`,
    '-extfile',
    `${name}.ext`,
  );
  return {
    caFile: join(dir, `${name}-ca.crt`),
    certFile: join(dir, `${name}.crt`),
    keyFile: join(dir, `${name}.key`),
  };
}

before(() => {
  if (MISSING) return;
  dir = mkdtempSync(join(tmpdir(), 'tandem-tls-'));
  good = makePki('good');
  rogue = makePki('rogue');
});

after(() => {
  if (MISSING) return;
  rmSync(dir, { recursive: true, force: true });
});

test('mutual TLS round trip', { skip: MISSING }, async () => {
  const a = await startNode(1, { tls: good });
  const b = await startNode(2, { tls: good });
  try {
    a.transport.setPeer(2, [b.address]);
    b.transport.setPeer(1, [a.address]);
    const data = Uint8Array.from({ length: 100_000 }, (_, i) => i & 0xff);
    a.transport.send(2, [
      msg({ type: MessageType.App, entries: [{ term: 1, index: 1, type: 0, data }] }),
    ]);
    b.transport.send(1, [msg({ type: MessageType.AppResp, from: 2, to: 1, index: 1 })]);
    await waitUntil(() => b.inbox.length === 1 && a.inbox.length === 1, 'TLS delivery');
    assert.deepEqual(Buffer.from(b.inbox[0]!.entries[0]!.data), Buffer.from(data));
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('a TLS peer without a valid certificate is refused; the server keeps serving', {
  skip: MISSING,
}, async () => {
  const b = await startNode(2, { tls: good });
  const intruder = await startNode(3, { tls: rogue });
  const a = await startNode(1, { tls: good });
  try {
    intruder.transport.setPeer(2, [b.address]);
    intruder.transport.send(2, [msg({ type: MessageType.Heartbeat, from: 3 })]);
    await waitUntil(
      () => b.logger.errors().some((e) => e.includes('TLS handshake refused')),
      'refusal of a certificate from another CA',
    );

    // A TLS client presenting no certificate at all.
    const { host, port } = parseAddress(b.address);
    await new Promise<void>((resolve) => {
      const socket = tls.connect({ host, port, ca: undefined, rejectUnauthorized: false });
      socket.on('error', () => {});
      socket.on('data', () => {});
      socket.on('close', () => resolve());
    });
    // Plain TCP speaking our framing to a TLS port.
    await new Promise<void>((resolve) => {
      const socket = net.connect({ host, port }, () => socket.write(Buffer.alloc(64, 7)));
      socket.on('error', () => {});
      socket.on('close', () => resolve());
    });

    // Refused at the TLS layer (not merely timed out later at our handshake): three refusals.
    await waitUntil(
      () => b.logger.errors().filter((e) => e.includes('TLS handshake refused')).length >= 3,
      'three TLS refusals',
    );
    assert.equal(b.inbox.length, 0);
    a.transport.setPeer(2, [b.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 5 })]);
    await waitUntil(() => b.inbox.length === 1, 'delivery from the valid peer');
    assert.equal(b.inbox[0]!.commit, 5);
    assert.equal(intruder.transport.peerStatus(2)!.links[0]!.connects, 0);
  } finally {
    await Promise.all([a.close(), b.close(), intruder.close()]);
  }
});
