/**
 * `:authority` values etcd 3.4's Go client sends (`http://host:port`, as `etcdctl --cluster`
 * dials members' published URLs) are accepted by our gRPC server (nghttp2 alone resets such a
 * stream with PROTOCOL_ERROR); connections whose first request needs no rewrite are served
 * natively. etcdctl itself is in test/integration/etcdctl-differential.test.ts.
 */
import assert from 'node:assert/strict';
import { connect, constants, type IncomingHttpHeaders } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import {
  AuthorityRewriter,
  acceptableAuthority,
  huffmanDecode,
  negotiateHttp2,
  rewriteHeaderBlock,
  settingsFrame,
} from '../../src/api/grpc/authority.js';
import { frameMessage } from '../../src/api/grpc/framing.js';
import { type MethodDescriptor, unaryHandler } from '../../src/api/grpc/handlers.js';
import { GrpcServer } from '../../src/api/grpc/server.js';
import { Status } from '../../src/api/grpc/status.js';

const TEST_TIMEOUT_MS = 15_000;

describe('HPACK pieces', () => {
  test('Huffman decoding: RFC 7541 C.4 vectors; invalid padding refused', () => {
    const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');
    assert.equal(
      huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff'))?.toString(),
      'www.example.com',
    );
    assert.equal(huffmanDecode(hex('a8eb 1064 9cbf'))?.toString(), 'no-cache');
    assert.equal(huffmanDecode(hex('25a8 49e9 5ba9 7d7f'))?.toString(), 'custom-key');
    // Padding longer than 7 bits, or not all ones, is an error (RFC 7541 §5.2).
    assert.equal(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff ff')), null);
    assert.equal(huffmanDecode(hex('00')), null);
  });

  test('authorities: URLs made acceptable at the same length, host:port untouched', () => {
    assert.equal(acceptableAuthority(Buffer.from('127.0.0.1:2379')), null);
    assert.equal(acceptableAuthority(Buffer.from('[::1]:2379')), null);
    assert.equal(
      acceptableAuthority(Buffer.from('http://127.0.0.1:2379'))?.toString(),
      'http:__127.0.0.1:2379',
    );
  });

  test('header blocks: only a literal authority that needs it is rewritten', () => {
    const url = Buffer.from('http://127.0.0.1:2379');
    // :method POST (indexed 3), :authority literal with incremental indexing, static name 1.
    const block = Buffer.concat([Buffer.from([0x83, 0x41, url.length]), url, Buffer.from([0x86])]);
    const fixed = rewriteHeaderBlock(block);
    assert.ok(fixed !== null);
    assert.equal(fixed.toString('latin1'), `\x83\x41\x15http:__127.0.0.1:2379\x86`);
    // The same authority Huffman-coded (as grpc-go sends it) is decoded, then rewritten raw.
    const valid = Buffer.concat([
      Buffer.from([0x41, 0x8c]),
      Buffer.from('f1e3c2e5f23a6ba0ab90f4ff', 'hex'),
    ]);
    assert.equal(rewriteHeaderBlock(valid), null, 'www.example.com needs no rewrite');
    // Literal name ":authority" without indexing.
    const named = Buffer.concat([
      Buffer.from([0x00, 10]),
      Buffer.from(':authority'),
      Buffer.from([url.length]),
      url,
    ]);
    assert.equal(rewriteHeaderBlock(named)?.subarray(13).toString(), 'http:__127.0.0.1:2379');
    // Truncated blocks are left to nghttp2.
    assert.equal(rewriteHeaderBlock(block.subarray(0, 5)), null);
  });
});

const ECHO: MethodDescriptor = {
  path: '/test.Echo/Unary',
  requestStream: false,
  responseStream: false,
  codec: {
    decodeRequest: (b: Buffer) => Buffer.from(b),
    encodeResponse: (r: unknown) => frameMessage(r as Buffer),
  },
};

describe('the gRPC server and URL authorities', { timeout: 60_000 }, () => {
  let server: GrpcServer;
  let port: number;

  before(async () => {
    server = new GrpcServer({
      receiveMessageBytesMax: 1024 * 1024,
      sendMessageBytesMax: 1024 * 1024,
      concurrentStreamsMax: 100,
      keepaliveTimeMs: 60_000,
      keepaliveTimeoutMs: 1_000,
      statusOf: () => ({ code: Status.INTERNAL, details: 'internal' }),
      logger: { debug: () => {}, warn: () => {} },
      http: {
        http1: (_req, res) => res.end('http1'),
        http2: (stream) => stream.respond({ ':status': 200 }, { endStream: true }),
      },
    });
    server.addService(
      { Unary: ECHO },
      { Unary: unaryHandler(async (req: Buffer) => Buffer.concat([Buffer.from('echo:'), req])) },
    );
    port = await server.listen('127.0.0.1:0');
  });

  after(() => server.close(0));

  /** Three calls on one connection with `authority`; resolves with their grpc-status values. */
  function callsWith(authority: string): Promise<(string | undefined)[]> {
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const one = () =>
      new Promise<string | undefined>((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': ECHO.path,
          ':authority': authority,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        let headers: IncomingHttpHeaders = {};
        stream.on('response', (h) => {
          headers = h;
        });
        stream.on('trailers', (t) => {
          headers = { ...headers, ...t };
        });
        stream.on('data', () => {});
        stream.on('error', reject);
        stream.on('close', () => {
          if (stream.rstCode !== constants.NGHTTP2_NO_ERROR) {
            reject(new Error(`stream reset with ${stream.rstCode}`));
          } else resolve(headers['grpc-status'] as string | undefined);
        });
        stream.end(frameMessage(Buffer.from('x')));
      });
    return (async () => {
      try {
        const out = [];
        for (let i = 0; i < 3; i++) out.push(await one());
        return out;
      } finally {
        session.close();
      }
    })();
  }

  test('an http:// URL as :authority is served, call after call', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    assert.deepEqual(await callsWith(`http://127.0.0.1:${port}`), ['0', '0', '0']);
  });

  test('a host:port authority is served too', { timeout: TEST_TIMEOUT_MS }, async () => {
    assert.deepEqual(await callsWith(`127.0.0.1:${port}`), ['0', '0', '0']);
  });

  test('grpc-js, which waits for nothing, still works (and HTTP/1.1 beside it)', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      const res = await new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest(
          ECHO.path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from('hi'),
          new Metadata(),
          { deadline: Date.now() + 5_000 },
          (err, r) => (err ? reject(err) : resolve(r!)),
        ),
      );
      assert.equal(res.toString(), 'echo:hi');
    } finally {
      client.close();
    }
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(await res.text(), 'http1');
  });
});

describe('negotiateHttp2: native unless the first request needs a rewrite', {
  timeout: 30_000,
}, () => {
  let front: Server;
  let port: number;
  const served: ('native' | 'rewritten')[] = [];
  const http2 = (async () => (await import('node:http2')).createServer())();

  before(async () => {
    const h2 = await http2;
    h2.on('stream', (stream) => stream.respond({ ':status': 204 }, { endStream: true }));
    front = createServer((socket: Socket) => {
      socket.on('error', () => {});
      negotiateHttp2(socket, Buffer.alloc(0), settingsFrame(Buffer.alloc(0)), (connection) => {
        served.push(connection instanceof AuthorityRewriter ? 'rewritten' : 'native');
        h2.emit('connection', connection);
      });
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    port = (front.address() as { port: number }).port;
  });

  after(() => new Promise<void>((resolve) => front.close(() => resolve())));

  async function get(authority: string): Promise<number> {
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 2; i++) {
        statuses.push(
          await new Promise<number>((resolve, reject) => {
            const s = session.request({ ':path': '/', ':authority': authority });
            s.on('response', (h) => resolve(Number(h[':status'])));
            s.on('error', reject);
            s.on('close', () => reject(new Error(`closed (rst ${s.rstCode})`)));
            s.end();
          }),
        );
      }
      assert.deepEqual(statuses, [204, 204]);
      return statuses.length;
    } finally {
      session.close();
    }
  }

  test('host:port → native; URL → rewritten', { timeout: TEST_TIMEOUT_MS }, async () => {
    await get(`127.0.0.1:${port}`);
    await get(`http://127.0.0.1:${port}`);
    assert.deepEqual(served, ['native', 'rewritten']);
  });
});
