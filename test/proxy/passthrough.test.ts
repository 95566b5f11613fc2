/**
 * The gateway's raw pass-through (src/proxy/passthrough.ts) against our real gRPC server on
 * loopback: request and response bytes arrive unchanged (a response spread over many DATA
 * frames included), metadata goes along, an answered status comes back with its message as
 * given (percent-encoding undone), and each failure is classified the way the Dispatcher's
 * retry rule needs: answered, lost (deadline, member gone with the request out, UNAVAILABLE
 * answered) or unsent (nothing listening).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { frameMessage } from '../../src/api/grpc/framing.js';
import {
  type CallContext,
  describeService,
  type MethodHandler,
  unaryHandler,
} from '../../src/api/grpc/handlers.js';
import { GrpcServer } from '../../src/api/grpc/server.js';
import { type CallStatus, Status } from '../../src/api/grpc/status.js';
import { serviceDefinition } from '../../src/api/proto.js';
import { freePort } from '../../src/cli/local-net.js';
import { PASSTHROUGH_CODEC, RawUpstreams } from '../../src/proxy/passthrough.js';
import { GrpcMetadata, type UpstreamError } from '../../src/proxy/upstream.js';

class FailWith extends Error {
  constructor(readonly status: CallStatus) {
    super(status.details);
  }
}

const UNICODE_DETAILS = 'etcdserver: ünïcode 100% sure';

interface Seen {
  requests: Buffer[];
  cancelled: number;
}

function startServer(seen: Seen) {
  const kv = serviceDefinition('kv');
  const codecs = Object.fromEntries(Object.keys(kv).map((name) => [name, PASSTHROUGH_CODEC]));
  const handlers: Record<string, MethodHandler> = {
    // Echoes the request twice: a response as big as two requests.
    Range: unaryHandler(async (request: Buffer) => {
      seen.requests.push(Buffer.from(request));
      return frameMessage(Buffer.concat([request, request]));
    }),
    Put: unaryHandler(async () => {
      throw new FailWith({ code: Status.FAILED_PRECONDITION, details: UNICODE_DETAILS });
    }),
    // Never answers; counts the cancellations it sees.
    DeleteRange: unaryHandler(
      (_request: Buffer, call: CallContext) =>
        new Promise((_resolve, reject) => {
          call.signal.addEventListener('abort', () => {
            seen.cancelled++;
            reject(new Error('cancelled'));
          });
        }),
    ),
    Txn: unaryHandler(async () => {
      throw new FailWith({ code: Status.UNAVAILABLE, details: 'etcdserver: leader changed' });
    }),
    // Answers with the metadata it was given.
    Compact: unaryHandler(async (_request: Buffer, call: CallContext) =>
      frameMessage(Buffer.from(String(call.metadata.get('token')[0]))),
    ),
  };
  const server = new GrpcServer({
    receiveMessageBytesMax: 4 * 1024 * 1024,
    sendMessageBytesMax: 2 ** 31 - 1,
    concurrentStreamsMax: 100,
    keepaliveTimeMs: 60_000,
    keepaliveTimeoutMs: 1000,
    statusOf: (err) =>
      err instanceof FailWith ? err.status : { code: Status.INTERNAL, details: 'internal' },
    logger: { debug: () => {}, warn: () => {} },
  });
  server.addService(describeService(kv, codecs), handlers);
  return server;
}

async function rejection(p: Promise<unknown>): Promise<UpstreamError> {
  try {
    await p;
  } catch (e) {
    return e as UpstreamError;
  }
  assert.fail('the call succeeded');
}

describe('raw pass-through to a member', { timeout: 60_000 }, () => {
  const seen: Seen = { requests: [], cancelled: 0 };
  let server: GrpcServer;
  let url: string;
  const upstreams = new RawUpstreams();
  before(async () => {
    server = startServer(seen);
    url = `http://127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  });
  after(async () => {
    upstreams.close();
    await server.close(100);
  });

  test('request and response bytes unchanged, across many DATA frames', async () => {
    const request = randomBytes(200_000);
    const response = (await upstreams.unary(url, 'kv', 'Range', request, new GrpcMetadata(), 5000)
      .done) as Buffer;
    assert.ok(seen.requests.at(-1)!.equals(request), 'the member got the bytes sent');
    assert.ok(response.equals(frameMessage(Buffer.concat([request, request]))));
    // An empty message too.
    const empty = (await upstreams.unary(
      url,
      'kv',
      'Range',
      Buffer.alloc(0),
      new GrpcMetadata(),
      5000,
    ).done) as Buffer;
    assert.ok(empty.equals(frameMessage(Buffer.alloc(0))));
  });

  test('metadata goes along', async () => {
    const md = new GrpcMetadata();
    md.add('token', 'secret-token-1');
    const response = (await upstreams.unary(url, 'kv', 'Compact', Buffer.alloc(0), md, 5000)
      .done) as Buffer;
    assert.equal(response.subarray(5).toString(), 'secret-token-1');
  });

  test('an answered status comes back as given', async () => {
    const e = await rejection(
      upstreams.unary(url, 'kv', 'Put', Buffer.alloc(3), new GrpcMetadata(), 5000).done,
    );
    assert.deepEqual(e, {
      code: Status.FAILED_PRECONDITION,
      details: UNICODE_DETAILS,
      kind: 'answer',
    });
  });

  test('UNAVAILABLE answered counts as lost (as upstream.ts classify does)', async () => {
    const e = await rejection(
      upstreams.unary(url, 'kv', 'Txn', Buffer.alloc(0), new GrpcMetadata(), 5000).done,
    );
    assert.deepEqual(e, {
      code: Status.UNAVAILABLE,
      details: 'etcdserver: leader changed',
      kind: 'lost',
    });
  });

  test('a deadline passed: lost, and the member sees the call cancelled', async () => {
    const before = seen.cancelled;
    const e = await rejection(
      upstreams.unary(url, 'kv', 'DeleteRange', Buffer.alloc(0), new GrpcMetadata(), 200).done,
    );
    assert.equal(e.code, Status.DEADLINE_EXCEEDED);
    assert.equal(e.kind, 'lost');
    const deadline = Date.now() + 5000;
    while (seen.cancelled === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(seen.cancelled, before + 1);
  });

  test('cancel(): the call fails and the member sees it cancelled', async () => {
    const before = seen.cancelled;
    const pending = upstreams.unary(
      url,
      'kv',
      'DeleteRange',
      Buffer.alloc(0),
      new GrpcMetadata(),
      5000,
    );
    // Wait until the call is out (the member has it), then cancel.
    await new Promise((r) => setTimeout(r, 100));
    pending.cancel();
    const e = await rejection(pending.done);
    assert.equal(e.code, Status.CANCELLED);
    const deadline = Date.now() + 5000;
    while (seen.cancelled === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(seen.cancelled, before + 1);
  });

  test('nothing listening: unsent (a write may go elsewhere)', async () => {
    const port = await freePort();
    const e = await rejection(
      upstreams.unary(
        `http://127.0.0.1:${port}`,
        'kv',
        'Put',
        Buffer.alloc(0),
        new GrpcMetadata(),
        5000,
      ).done,
    );
    assert.equal(e.code, Status.UNAVAILABLE);
    assert.equal(e.kind, 'unsent');
  });

  test('the member goes away with the request out: lost; after it is back, calls flow', async () => {
    const seen2: Seen = { requests: [], cancelled: 0 };
    const other = startServer(seen2);
    const port = await other.listen('127.0.0.1:0');
    const otherUrl = `http://127.0.0.1:${port}`;
    const pending = upstreams.unary(
      otherUrl,
      'kv',
      'DeleteRange',
      Buffer.alloc(0),
      new GrpcMetadata(),
      10_000,
    );
    await new Promise((r) => setTimeout(r, 100));
    await other.close(50);
    const e = await rejection(pending.done);
    assert.equal(e.kind, 'lost', JSON.stringify(e));
    // The same address serving again: a new session is made.
    const again = startServer(seen2);
    await again.listen(`127.0.0.1:${port}`);
    try {
      const response = (await upstreams.unary(
        otherUrl,
        'kv',
        'Range',
        Buffer.from('x'),
        new GrpcMetadata(),
        5000,
      ).done) as Buffer;
      assert.equal(response.subarray(5).toString(), 'xx');
    } finally {
      await again.close(50);
    }
  });
});
