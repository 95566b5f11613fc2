/**
 * The admin endpoint's limits (src/api/admin.ts): a body over its limit — declared by
 * Content-Length or streamed chunk by chunk — is answered 413, is not read any further, and the
 * connection is closed; the same holds for /faults. Fault injection needs a loopback admin
 * address (config), and /status of a real member says whether it is on
 * (test/integration/peer-auth.test.ts).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  type AdminServer,
  MEMBER_OP_BODY_BYTES_MAX,
  startAdminServer,
} from '../../src/api/admin.js';
import { configSchema, isLoopback } from '../../src/cli/config.js';
import { faultAdmin } from '../../src/cli/fault-admin.js';
import { clusterSecret } from '../../src/transport/handshake.js';
import { TcpTransport } from '../../src/transport/transport.js';

const calls: string[] = [];
let server: AdminServer;
const transport = new TcpTransport({
  id: 1,
  clusterId: 'c1',
  secret: clusterSecret('admin-test-secret-0123456789'),
  listen: [{ host: '127.0.0.1', port: 0 }],
  faultInjection: true,
});

interface RawAnswer {
  readonly head: string;
  /** Bytes this test managed to write before the server closed the connection. */
  readonly written: number;
  readonly closed: boolean;
}

/**
 * Sends `head`, then writes `chunk` repeatedly (up to `bytesMax`) until the server closes the
 * connection; resolves with the response head and how much was written.
 */
function streamRequest(head: string, chunk: Buffer, bytesMax: number): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: server.port });
    let response = '';
    let written = 0;
    let closed = false;
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.on('data', (d: Buffer) => {
      response += d.toString('latin1');
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve({ head: response.split('\r\n\r\n')[0] ?? '', written, closed });
    });
    const pump = (): void => {
      while (!closed && !socket.destroyed && written < bytesMax) {
        written += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      if (written >= bytesMax) setTimeout(() => socket.destroy(), 2_000);
    };
    socket.once('connect', () => {
      socket.write(head);
      pump();
    });
  });
}

describe('admin endpoint bodies', () => {
  before(async () => {
    const faults = faultAdmin(transport, () => [{ id: 2, name: 'n2' }]);
    server = await startAdminServer({
      listen: { host: '127.0.0.1', port: 0 },
      status: () => ({ ok: true }),
      ready: () => ({ ready: true, reason: '' }),
      metrics: { contentType: 'text/plain', scrape: async () => '' },
      memberOp: async (op, name) => {
        calls.push(`${op} ${name}`);
        return 'done';
      },
      extra: (req, res) => faults.handle(req, res),
    });
  });

  after(async () => {
    await server.close();
    await transport.close();
  });

  test('a body within the limit is served', async () => {
    const r = await fetch(`http://127.0.0.1:${server.port}/member/promote`, {
      method: 'POST',
      body: JSON.stringify({ name: 'n4' }),
    });
    assert.equal(r.status, 200);
    assert.deepEqual(calls, ['promote n4']);
  });

  test('a declared Content-Length over the limit: 413 before any body is read, then close', async () => {
    const answer = await streamRequest(
      `POST /member/demote HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${64 * 1024 * 1024}\r\n\r\n`,
      Buffer.alloc(64 * 1024, 0x20),
      64 * 1024 * 1024,
    );
    assert.match(answer.head, /^HTTP\/1\.1 413/);
    assert.match(answer.head, /[Cc]onnection: close/);
    assert.ok(answer.closed);
    assert.ok(answer.written < 32 * 1024 * 1024, `the server read on: ${answer.written} bytes`);
    assert.deepEqual(calls, ['promote n4'], 'no member op ran');
  });

  test('a chunked body streaming past the limit: 413, not read further, connection closed', async () => {
    const chunk = Buffer.from(`1000\r\n${' '.repeat(0x1000)}\r\n`);
    for (const path of ['/member/standby', '/faults']) {
      const answer = await streamRequest(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`,
        chunk,
        64 * 1024 * 1024,
      );
      assert.match(answer.head, /^HTTP\/1\.1 413/, path);
      assert.ok(answer.closed, path);
      assert.ok(
        answer.written < 32 * 1024 * 1024,
        `${path}: the server read on: ${answer.written}`,
      );
    }
    assert.deepEqual(calls, ['promote n4']);
    assert.ok(MEMBER_OP_BODY_BYTES_MAX < 0x1000 * 2);
  });

  test('the server still serves after refusing', async () => {
    const r = await fetch(`http://127.0.0.1:${server.port}/status`);
    assert.deepEqual(await r.json(), { ok: true });
  });
});

describe('fault injection needs a loopback admin endpoint', () => {
  const parse = (input: object) => configSchema('/srv').safeParse({ name: 'n1', ...input });

  test('refused on a routable or wildcard admin address, naming the option', () => {
    for (const admin of ['0.0.0.0:2381', '10.1.2.3:2381', '[::]:2381', 'example.com:2381']) {
      const r = parse({ listen: { admin }, testMode: { faultInjection: true } });
      assert.equal(r.success, false, admin);
      const issue = r.error!.issues.find((i) => i.path.join('.') === 'testMode.faultInjection');
      assert.ok(issue, admin);
      assert.match(issue.message, /needs listen\.admin on a loopback address/);
    }
  });

  test('accepted on loopback, off loopback only with faultsOffLoopback, always without faults', () => {
    for (const admin of ['127.0.0.1:2381', '127.8.9.10:2381', '[::1]:2381', 'localhost:2381']) {
      assert.ok(isLoopback(admin), admin);
      assert.equal(parse({ listen: { admin }, testMode: { faultInjection: true } }).success, true);
    }
    const netns = { faultInjection: true, faultsOffLoopback: true };
    assert.equal(parse({ listen: { admin: '10.1.2.3:2381' }, testMode: netns }).success, true);
    assert.equal(parse({ listen: { admin: '0.0.0.0:2381' } }).success, true);
  });
});
