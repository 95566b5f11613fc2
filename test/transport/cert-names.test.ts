/**
 * Peer certificates bound to member names (src/transport/tls.ts, config.ts "TLS"): the rule
 * itself, then real TLS transports on loopback with certificates from the dev PKI — a peer
 * claiming another member's id with its own certificate is refused at HELLO, and a dialer
 * refuses a server whose certificate names another member than the one it dialed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type DevPki, devPki } from '../../src/cli/dev-certs.js';
import { MessageType } from '../../src/raft/types.js';
import { memberCertificateRefusal, type TransportTlsOptions } from '../../src/transport/tls.js';
import { OPENSSL_MISSING } from '../integration/openssl.js';
import { msg, startNode, waitUntil } from './helpers.js';

const NAMES = new Map([
  [1, 'n1'],
  [2, 'n2'],
  [7, ''], // added, not yet published
]);

describe('memberCertificateRefusal', () => {
  test('a known member must be named by CN or DNS SAN', () => {
    assert.equal(memberCertificateRefusal(1, ['n1', 'localhost'], NAMES), null);
    assert.equal(memberCertificateRefusal(1, ['localhost', 'n1'], NAMES), null);
    assert.match(
      memberCertificateRefusal(1, ['n2', 'localhost'], NAMES) ?? '',
      /names n2, localhost, not member n1/,
    );
    assert.match(memberCertificateRefusal(1, [], NAMES) ?? '', /names no name, not member n1/);
    // Close is not equal.
    assert.notEqual(memberCertificateRefusal(1, ['n1.example', 'N1'], NAMES), null);
  });

  test("a member known by id only may not use another member's certificate", () => {
    assert.equal(memberCertificateRefusal(7, ['n7', 'localhost'], NAMES), null);
    assert.equal(memberCertificateRefusal(9, ['anything'], NAMES), null);
    assert.match(memberCertificateRefusal(7, ['n2'], NAMES) ?? '', /names member n2/);
    assert.match(memberCertificateRefusal(9, ['x', 'n1'], NAMES) ?? '', /names member n1/);
  });
});

describe('TLS transports with member names', { skip: OPENSSL_MISSING }, () => {
  let dir = '';
  let pki: DevPki;
  const tlsOf = (name: string): TransportTlsOptions => {
    const files = pki.member(name);
    return { caFile: pki.ca, certFile: files.cert, keyFile: files.key };
  };
  const memberNames = () => NAMES;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-cert-names-'));
    pki = devPki(dir);
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  test('members with their own certificates talk', async () => {
    const a = await startNode(1, { tls: tlsOf('n1'), memberNames });
    const b = await startNode(2, { tls: tlsOf('n2'), memberNames });
    try {
      a.transport.setPeer(2, [b.address]);
      a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 3 })]);
      await waitUntil(() => b.inbox.length === 1, 'delivery between named members');
      assert.equal(b.inbox[0]!.commit, 3);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test("a peer claiming member n2 with n1's certificate is refused at HELLO", async () => {
    const a = await startNode(1, { tls: tlsOf('n1'), memberNames });
    // An impostor: says it is member 2, shows n1's certificate (a valid one of the same CA).
    const impostor = await startNode(2, { tls: tlsOf('n1') });
    try {
      impostor.transport.setPeer(1, [a.address]);
      impostor.transport.send(1, [msg({ type: MessageType.Heartbeat, from: 2, to: 1 })]);
      await waitUntil(
        () => a.logger.errors().some((e) => /its certificate names n1.*not member n2/.test(e)),
        'the refusal naming both',
      );
      assert.equal(a.inbox.length, 0);
    } finally {
      await Promise.all([a.close(), impostor.close()]);
    }
  });

  test('a dialer refuses a server whose certificate names another member', async () => {
    const a = await startNode(1, { tls: tlsOf('n1'), memberNames });
    // Listens as member 2 with a certificate naming n1: a's dial must not reach it.
    const wrongServer = await startNode(2, { tls: tlsOf('n1') });
    const b = await startNode(2, { tls: tlsOf('n2') });
    try {
      a.transport.setPeer(2, [wrongServer.address]);
      a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 1 })]);
      await waitUntil(
        () => /not member n2/.test(a.transport.peerStatus(2)?.links[0]?.lastError ?? ''),
        'the dial refused for the wrong name',
      );
      assert.equal(wrongServer.inbox.length, 0);
      // Control: readdressed to the real n2, the same transport delivers.
      a.transport.setPeer(2, [b.address]);
      a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 2 })]);
      await waitUntil(() => b.inbox.length >= 1, 'delivery to the real n2', 10_000);
      assert.equal(wrongServer.inbox.length, 0);
    } finally {
      await Promise.all([a.close(), b.close(), wrongServer.close()]);
    }
  });
});
