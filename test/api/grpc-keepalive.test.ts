/**
 * Keep-alive enforcement (etcd's --grpc-keepalive-min-time, grpc-go's EnforcementPolicy): the
 * pure strike counting, then raw node:http2 clients against a real GrpcServer: a ping flood
 * gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings"; pings at the allowed rate with a stream open,
 * or right after the server sent data (BDP pings), keep the connection.
 */
import assert from 'node:assert/strict';
import { type ClientHttp2Session, connect, constants } from 'node:http2';
import { after, describe, test } from 'node:test';
import { frameMessage, MESSAGE_PREFIX_BYTES } from '../../src/api/grpc/framing.js';
import { type BidiCall, bidiHandler, type MethodDescriptor } from '../../src/api/grpc/handlers.js';
import {
  PING_STRIKES_MAX,
  PING_WITHOUT_STREAM_INTERVAL_MS,
  PingStrikes,
  TOO_MANY_PINGS,
} from '../../src/api/grpc/keepalive.js';
import { GrpcServer } from '../../src/api/grpc/server.js';
import { Status } from '../../src/api/grpc/status.js';

const MIN_TIME_MS = 300;
const TEST_TIMEOUT_MS = 20_000;

describe('PingStrikes (grpc-go handlePing)', () => {
  const policy = { minTimeMs: 5_000, permitWithoutStream: false };

  test('the first ping never strikes; with no stream, any ping within 2 h strikes', () => {
    const strikes = new PingStrikes(policy);
    assert.equal(strikes.onPing(0, 0), false);
    assert.equal(strikes.strikeCount, 0);
    for (let i = 1; i <= PING_STRIKES_MAX; i++) {
      assert.equal(strikes.onPing(i * 60_000, 0), false, `strike ${i} is forgiven`);
      assert.equal(strikes.strikeCount, i);
    }
    assert.equal(strikes.onPing(10 * 60_000, 0), true, 'one strike past the max sends away');
  });

  test('with no stream, a ping 2 h after the previous is fine', () => {
    const strikes = new PingStrikes(policy);
    for (let i = 0; i < 10; i++) {
      assert.equal(strikes.onPing(i * PING_WITHOUT_STREAM_INTERVAL_MS, 0), false);
    }
    assert.equal(strikes.strikeCount, 0);
  });

  test('with a stream open, minTime apart is fine and sooner strikes', () => {
    const strikes = new PingStrikes(policy);
    for (let i = 0; i < 10; i++) assert.equal(strikes.onPing(i * 5_000, 1), false);
    assert.equal(strikes.strikeCount, 0);
    assert.equal(strikes.onPing(45_000 + 4_999, 1), false);
    assert.equal(strikes.strikeCount, 1);
  });

  test('permitWithoutStream: minTime applies with no stream too', () => {
    const strikes = new PingStrikes({ minTimeMs: 5_000, permitWithoutStream: true });
    for (let i = 0; i < 10; i++) assert.equal(strikes.onPing(i * 5_000, 0), false);
    assert.equal(strikes.strikeCount, 0);
  });

  test('data sent since the last ping clears the strikes and excuses the next ping', () => {
    const strikes = new PingStrikes(policy);
    strikes.onPing(0, 1);
    strikes.onPing(1, 1);
    strikes.onPing(2, 1);
    assert.equal(strikes.strikeCount, 2);
    strikes.noteSent();
    assert.equal(strikes.onPing(3, 1), false);
    assert.equal(strikes.strikeCount, 0);
    // Only the first ping after the data is excused.
    strikes.onPing(4, 1);
    assert.equal(strikes.strikeCount, 1);
  });
});

// ---------------------------------------------------------------------------------------------

const raw = {
  decodeRequest: (b: Buffer) => Buffer.from(b),
  encodeResponse: (r: unknown) => frameMessage(r as Buffer),
};
const ECHO: Record<string, MethodDescriptor> = {
  Bidi: { path: '/test.Echo/Bidi', requestStream: true, responseStream: true, codec: raw },
};

async function startServer(): Promise<{ server: GrpcServer; port: number }> {
  const server = new GrpcServer({
    receiveMessageBytesMax: 64 * 1024,
    sendMessageBytesMax: 2 ** 31 - 1,
    concurrentStreamsMax: 100,
    keepaliveTimeMs: 60_000,
    keepaliveTimeoutMs: 20_000,
    keepaliveEnforcement: { minTimeMs: MIN_TIME_MS, permitWithoutStream: false },
    statusOf: () => ({ code: Status.INTERNAL, details: 'internal' }),
    logger: { debug: () => {}, warn: () => {} },
  });
  server.addService(ECHO, {
    Bidi: bidiHandler((call: BidiCall<Buffer, Buffer>) => {
      call.on('data', (m) => call.write(m));
      call.on('end', () => call.end());
    }),
  });
  const port = await server.listen('127.0.0.1:0');
  return { server, port };
}

interface Watched {
  session: ClientHttp2Session;
  goaway: { code: number; data: string } | null;
  closed: boolean;
}

async function open(port: number): Promise<Watched> {
  const session = connect(`http://127.0.0.1:${port}`);
  const watched: Watched = { session, goaway: null, closed: false };
  session.on('error', () => {});
  session.on('goaway', (code: number, _last: number, data?: Buffer) => {
    watched.goaway = { code, data: data?.toString() ?? '' };
  });
  session.on('close', () => {
    watched.closed = true;
  });
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('close', () => reject(new Error('closed before connecting')));
  });
  return watched;
}

/** Resolves with the ping's round trip, or false when the session could not send it. */
function ping(session: ClientHttp2Session): Promise<boolean> {
  return new Promise((resolve) => {
    if (session.closed || session.destroyed) {
      resolve(false);
      return;
    }
    try {
      session.ping((err) => resolve(err === null));
    } catch {
      resolve(false);
    }
  });
}

async function waitUntil(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function openBidi(session: ClientHttp2Session) {
  const stream = session.request({
    ':method': 'POST',
    ':path': '/test.Echo/Bidi',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  const received: Buffer[] = [];
  let pending = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= MESSAGE_PREFIX_BYTES) {
      const length = pending.readUInt32BE(1);
      if (pending.length < MESSAGE_PREFIX_BYTES + length) break;
      received.push(pending.subarray(MESSAGE_PREFIX_BYTES, MESSAGE_PREFIX_BYTES + length));
      pending = pending.subarray(MESSAGE_PREFIX_BYTES + length);
    }
  });
  return { stream, received };
}

describe('keep-alive enforcement on the wire', { timeout: 60_000 }, () => {
  const servers: GrpcServer[] = [];
  after(async () => {
    for (const s of servers) await s.close(0);
  });

  test('a ping flood with no stream open gets GOAWAY ENHANCE_YOUR_CALM too_many_pings', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const { server, port } = await startServer();
    servers.push(server);
    const client = await open(port);
    for (let i = 0; i < 20 && !client.closed; i++) await ping(client.session);
    await waitUntil('the connection to close', () => client.closed);
    assert.deepEqual(client.goaway, {
      code: constants.NGHTTP2_ENHANCE_YOUR_CALM,
      data: TOO_MANY_PINGS,
    });
    assert.equal(server.pingRefusalCount, 1);
  });

  test('a ping flood on a connection with a quiet open stream is sent away too', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const { server, port } = await startServer();
    servers.push(server);
    const client = await open(port);
    const bidi = openBidi(client.session);
    bidi.stream.write(frameMessage(Buffer.from('hello')));
    await waitUntil('the echo', () => bidi.received.length === 1);
    for (let i = 0; i < 20 && !client.closed; i++) await ping(client.session);
    await waitUntil('the connection to close', () => client.closed);
    assert.equal(client.goaway?.code, constants.NGHTTP2_ENHANCE_YOUR_CALM);
    assert.equal(client.goaway?.data, TOO_MANY_PINGS);
  });

  test('pings at the allowed rate with a stream open keep the connection and the stream', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const { server, port } = await startServer();
    servers.push(server);
    const client = await open(port);
    const bidi = openBidi(client.session);
    bidi.stream.write(frameMessage(Buffer.from('first')));
    await waitUntil('the echo', () => bidi.received.length === 1);
    // Ten pings, each a little more than minTime after the last, no data in between.
    for (let i = 0; i < 10; i++) {
      await sleep(MIN_TIME_MS + 60);
      assert.equal(await ping(client.session), true, `ping ${i} answered`);
    }
    assert.equal(client.closed, false);
    assert.equal(client.goaway, null);
    bidi.stream.write(frameMessage(Buffer.from('still here')));
    await waitUntil('the second echo', () => bidi.received.length === 2);
    assert.equal(bidi.received[1]!.toString(), 'still here');
    assert.equal(server.pingRefusalCount, 0);
    client.session.destroy();
  });

  test('pings right after the server sent data (BDP pings) are never strikes', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const { server, port } = await startServer();
    servers.push(server);
    const client = await open(port);
    const bidi = openBidi(client.session);
    for (let i = 0; i < 20; i++) {
      bidi.stream.write(frameMessage(Buffer.from(`m${i}`)));
      await waitUntil(`echo ${i}`, () => bidi.received.length === i + 1);
      assert.equal(await ping(client.session), true, `ping ${i} answered`);
    }
    assert.equal(client.closed, false);
    assert.equal(client.goaway, null);
    client.session.destroy();
  });
});
