/**
 * The test-mode `/faults` admin endpoint: sets, shows and heals the transport's link rules, and
 * refuses what it cannot apply. (Whether dropped links really partition a cluster is what the
 * real-cluster chaos run shows.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { faultAdmin } from '../../src/cli/fault-admin.js';
import { adminRequest } from '../../src/cli/local-net.js';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import { NodeFileSystem } from '../../src/storage/index.js';
import { clusterSecret } from '../../src/transport/handshake.js';
import { TcpTransport } from '../../src/transport/transport.js';

describe('admin /faults', () => {
  let server: Server;
  let address: string;
  const transport = new TcpTransport({
    id: 1,
    clusterId: 'c1',
    secret: clusterSecret('fault-admin-test-secret'),
    listen: [{ host: '127.0.0.1', port: 0 }],
    faultInjection: true,
  });
  const disk = new FaultyFileSystem(new NodeFileSystem());
  const members = [
    { id: 1, name: 'n1' },
    { id: 0x2a, name: 'n2' },
    { id: 3, name: 'n3' },
  ];

  before(async () => {
    const admin = faultAdmin(transport, () => members, disk);
    server = createServer((req, res) => {
      if (admin.handle(req, res)) return;
      res.writeHead(404).end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await transport.close();
  });

  test('POST sets rules by name or hex id, GET shows them, DELETE heals', async () => {
    await adminRequest(address, 'POST', '/faults', {
      links: [
        { peer: 'n3', dropRate: 1 },
        { peer: '2a', delayMs: 50, dropRate: 0.1 },
      ],
    });
    const shown = await adminRequest<{ links: unknown[] }>(address, 'GET', '/faults');
    assert.deepEqual(shown.links, [
      { peer: 'n3', dropRate: 1, delayMs: 0 },
      { peer: '2a', dropRate: 0.1, delayMs: 50 },
    ]);
    const healed = await adminRequest<{ links: unknown[] }>(address, 'DELETE', '/faults');
    assert.deepEqual(healed.links, []);
  });

  test('bad rules are refused and change nothing', async () => {
    for (const body of [
      { links: [{ peer: 'n9', dropRate: 1 }] },
      { links: [{ peer: 'n2', dropRate: 2 }] },
      { links: [{ peer: 'n2', delayMs: -1 }] },
      { links: [{ peer: 'n2', delayMs: 1_000_000 }] },
      { rules: [] },
    ]) {
      await assert.rejects(adminRequest(address, 'POST', '/faults', body), /HTTP 400/);
    }
    const shown = await adminRequest<{ links: unknown[] }>(address, 'GET', '/faults');
    assert.deepEqual(shown.links, []);
  });

  test('a transport without fault injection cannot have the endpoint', () => {
    const plain = new TcpTransport({
      id: 1,
      clusterId: 'c1',
      secret: clusterSecret('fault-admin-test-secret'),
      listen: [{ host: '127.0.0.1', port: 0 }],
    });
    assert.equal(plain.faults, null);
    assert.throws(() => faultAdmin(plain, () => members), /faultInjection/);
  });

  test('POST disk arms the next fsync of a matching path to fail; bad disk specs are refused', async () => {
    for (const body of [
      { disk: { failNextSync: 'EBADF' } },
      { disk: { failNextSync: 'EIO', pathIncludes: 7 } },
    ]) {
      await assert.rejects(adminRequest(address, 'POST', '/faults', body), /HTTP 400/);
    }
    const shown = await adminRequest<{ diskFaultsArmed: number }>(address, 'POST', '/faults', {
      disk: { failNextSync: 'EIO', pathIncludes: 'wal' },
    });
    assert.equal(shown.diskFaultsArmed, 1);
    const dir = mkdtempSync(join(tmpdir(), 'tandem-fault-admin-'));
    try {
      const other = await disk.open(join(dir, 'snap'), 'create');
      await other.sync(); // not a WAL path: unaffected
      await other.close();
      const wal = await disk.open(join(dir, 'x.wal'), 'create');
      await assert.rejects(wal.sync(), /EIO/);
      await wal.sync(); // only the next one
      await wal.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('POST disk crashAfterBytes: the write crossing it lands a prefix, then every call fails', async () => {
    for (const body of [
      { disk: { crashAfterBytes: 0 } },
      { disk: { crashAfterBytes: 1.5 } },
      { disk: { crashAfterBytes: '10' } },
    ]) {
      await assert.rejects(adminRequest(address, 'POST', '/faults', body), /HTTP 400/);
    }
    const dir = mkdtempSync(join(tmpdir(), 'tandem-fault-admin-torn-'));
    try {
      const file = await disk.open(join(dir, 'seg.wal'), 'create');
      await adminRequest(address, 'POST', '/faults', { disk: { crashAfterBytes: 10 } });
      await file.write(new Uint8Array(8).fill(1), 0); // 8 bytes: under the crash point
      await assert.rejects(file.write(new Uint8Array(8).fill(2), 8), /ECRASHED/);
      await assert.rejects(file.datasync(), /ECRASHED/);
      const landed = readFileSync(join(dir, 'seg.wal'));
      assert.deepEqual(
        [...landed],
        [1, 1, 1, 1, 1, 1, 1, 1, 2, 2],
        'a torn write: 2 of its 8 bytes',
      );
      await disk.restart({ powerLoss: false });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
