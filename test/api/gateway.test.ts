/**
 * The gateway's HTTP edges on one API server (the test backend): limits, refusals with etcd's
 * bodies, plain HTTP/2 requests that are not gRPC, and idle HTTP/1.1 connections closed.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RECEIVE_MESSAGE_BYTES_MAX_DEFAULT } from '../../src/api/limits.js';
import { type ApiServer, startApiServer } from '../../src/api/server.js';
import { TestBackend, testLogger } from './harness.js';

describe('gateway edges', { timeout: 60_000 }, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;

  before(async () => {
    backend = new TestBackend();
    const { logger } = testLogger();
    server = await startApiServer({ backend, listen: '127.0.0.1:0', logger, gatewayStreamsMax: 1 });
    base = `http://127.0.0.1:${server.port}`;
  });

  after(async () => {
    await server.close();
    backend.close();
  });

  test('refusals: 404, 405, bad JSON 400, a body over the limit 413', async () => {
    const notFound = await fetch(`${base}/v3/kv/nope`, { method: 'POST' });
    assert.equal(notFound.status, 404);
    assert.equal(await notFound.text(), 'Not Found\n');
    assert.equal((await fetch(`${base}/elsewhere`)).status, 404);
    const wrong = await fetch(`${base}/v3/kv/put`);
    assert.equal(wrong.status, 405);
    const bad = await fetch(`${base}/v3/kv/put`, { method: 'POST', body: '{"key": "YQ==",' });
    assert.equal(bad.status, 400);
    const body = (await bad.json()) as { error: string; code: number; message: string };
    assert.equal(body.code, 3);
    assert.equal(body.error, body.message);
    const huge = 'x'.repeat(RECEIVE_MESSAGE_BYTES_MAX_DEFAULT + 1);
    const big = await fetch(`${base}/v3/kv/put`, { method: 'POST', body: huge });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { code: number }).code, 8);
  });

  test('an empty key is etcd’s error, with gRPC’s code mapped to HTTP 400', async () => {
    const res = await fetch(`${base}/v3/kv/put`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 400);
    const message = 'etcdserver: key is not provided';
    assert.deepEqual(await res.json(), { error: message, code: 3, message });
  });

  test('streams through the gateway are bounded: the second at once gets 429', async () => {
    const ctl = new AbortController();
    const first = await fetch(`${base}/v3/watch`, {
      method: 'POST',
      body: JSON.stringify({ create_request: { key: 'YQ==' } }),
      signal: ctl.signal,
    });
    assert.equal(first.status, 200);
    const second = await fetch(`${base}/v3/watch`, {
      method: 'POST',
      body: JSON.stringify({ create_request: { key: 'YQ==' } }),
    });
    assert.equal(second.status, 429);
    assert.equal(((await second.json()) as { code: number }).code, 8);
    ctl.abort();
  });

  test('plain HTTP/2 without a gRPC content-type reaches the gateway', async () => {
    const session = connect(base);
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ':path': '/version', ':method': 'GET' });
        let data = '';
        req.setEncoding('utf8');
        req.on('data', (chunk: string) => {
          data += chunk;
        });
        req.on('end', () => resolve(data));
        req.on('error', reject);
      });
      assert.equal(JSON.parse(text).etcdserver, '3.5.0');
    } finally {
      session.close();
    }
  });

  test('an idle HTTP/1.1 keep-alive connection is closed by the server', async () => {
    const closedBy = await new Promise<string>((resolve) => {
      const socket = netConnect({ host: '127.0.0.1', port: server.port }, () =>
        socket.write('GET /version HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n'),
      );
      let answered = false;
      socket.on('data', () => {
        answered = true;
      });
      socket.on('end', () => resolve(answered ? 'server' : 'server, unanswered'));
      socket.on('error', () => resolve('error'));
    });
    assert.equal(closedBy, 'server');
  });
});
