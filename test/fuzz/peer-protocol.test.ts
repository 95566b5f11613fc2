/**
 * Fuzzing the peer protocol's decoders with fast-check (budget: ./budget.ts): the frame decoder,
 * the handshake payloads (HELLO, CHALLENGE, AUTH, REFUSE), Raft messages, fetch requests and
 * answers, and the accepting side's whole pre-authentication state machine. Properties: no
 * exception but a TransportError, no allocation beyond the frame limit in force, valid frames
 * survive any split into socket chunks, and no invalid or unauthenticated input reaches the
 * member (nothing is delivered).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { REAL_CLOCK } from '../../src/io/clock.js';
import { MessageType } from '../../src/raft/types.js';
import { packFrame, unpackPayload } from '../../src/transport/codec.js';
import type { TransportContext } from '../../src/transport/context.js';
import { TransportError } from '../../src/transport/errors.js';
import { decodeFetchRequest, decodeFetchResponse } from '../../src/transport/fetch-protocol.js';
import { FrameDecoder, FrameType } from '../../src/transport/frame.js';
import {
  clusterSecret,
  decodeAuth,
  decodeChallenge,
  decodeHello,
  decodeRefusal,
  encodeAuth,
  encodeHello,
  HANDSHAKE_NONCE_BYTES,
} from '../../src/transport/handshake.js';
import { InboundConnection } from '../../src/transport/inbound.js';
import {
  FRAME_HEADER_BYTES,
  FRAME_VERSION,
  HANDSHAKE_FRAME_BYTES_MAX,
  resolveLimits,
} from '../../src/transport/limits.js';
import { SILENT_LOGGER } from '../../src/transport/logger.js';
import {
  decodeMessages,
  decodeSnapBegin,
  encodeMessagesFrame,
} from '../../src/transport/message-codec.js';
import { Prng } from '../../src/util/prng.js';
import { fuzzParams, fuzzTimeoutMs, largestAllocation } from './budget.js';

const FRAME_TYPES = Object.values(FrameType);

/** Only a TransportError may escape a decoder: anything else is a bug. */
function decodesOrRefuses(body: () => void): void {
  try {
    body();
  } catch (error) {
    if (!(error instanceof TransportError)) throw error;
  }
}

/** `bytes` cut at the given points (sorted, deduplicated), as socket chunks would be. */
function split(bytes: Uint8Array, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    if (p > from) out.push(Buffer.from(bytes.subarray(from, p)));
    from = p;
  }
  return out;
}

/** A frame header followed by `payload`, with a chosen (possibly lying) length/version/type. */
const arbFrame = fc
  .record({
    type: fc.oneof(fc.constantFrom(...FRAME_TYPES), fc.integer({ min: 0, max: 255 })),
    version: fc.oneof(fc.constant(FRAME_VERSION), fc.integer({ min: 0, max: 255 })),
    payload: fc.uint8Array({ maxLength: 600 }),
    lengthLie: fc.oneof(
      fc.constant(null),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.constantFrom(HANDSHAKE_FRAME_BYTES_MAX + 1, 2 ** 31, 0xffffffff, 0, 1, 2),
    ),
  })
  .map(({ type, version, payload, lengthLie }) => {
    const frame = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
    frame.writeUInt32BE(lengthLie ?? payload.length + 2, 0);
    frame[4] = version;
    frame[5] = type;
    frame.set(payload, FRAME_HEADER_BYTES);
    return frame;
  });

/** A byte stream: frames (honest or lying), raw garbage, or both mixed. */
const arbStream = fc
  .array(
    fc.oneof(
      arbFrame,
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    ),
    {
      maxLength: 8,
    },
  )
  .map((parts) => Buffer.concat(parts));

test('frame decoder: any bytes, any chunking, any limit: TransportError or frames within the limit, no big allocation', {
  timeout: fuzzTimeoutMs(),
}, () => {
  fc.assert(
    fc.property(
      arbStream,
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.constantFrom(HANDSHAKE_FRAME_BYTES_MAX, 64 * 1024),
      (stream, cuts, limit) => {
        const payloads: number[] = [];
        const decoder = new FrameDecoder(
          { onFrame: (_type, payload) => void payloads.push(payload.length) },
          limit,
        );
        const largest = largestAllocation(() =>
          decodesOrRefuses(() => {
            for (const chunk of split(stream, cuts)) decoder.push(chunk);
          }),
        );
        assert.ok(largest <= limit, `allocated ${largest} with a limit of ${limit}`);
        for (const bytes of payloads) assert.ok(bytes + 2 <= limit);
      },
    ),
    fuzzParams(),
  );
});

test('frame decoder: valid frames come out whole and in order from any chunking', {
  timeout: fuzzTimeoutMs(),
}, () => {
  const arbValid = fc.array(
    fc.record({
      type: fc.constantFrom(...FRAME_TYPES),
      value: fc.array(
        fc.oneof(fc.nat(), fc.string({ maxLength: 50 }), fc.uint8Array({ maxLength: 200 })),
      ),
    }),
    { minLength: 1, maxLength: 6 },
  );
  fc.assert(
    fc.property(arbValid, fc.array(fc.nat(), { maxLength: 12 }), (frames, cuts) => {
      const encoded = frames.map((f) => Buffer.from(packFrame(f.type, f.value)));
      const got: { type: number; payload: Buffer }[] = [];
      const decoder = new FrameDecoder(
        { onFrame: (type, payload) => void got.push({ type, payload: Buffer.from(payload) }) },
        64 * 1024,
      );
      for (const chunk of split(Buffer.concat(encoded), cuts)) decoder.push(chunk);
      assert.equal(got.length, frames.length);
      got.forEach((g, i) => {
        assert.equal(g.type, frames[i]!.type);
        assert.ok(g.payload.equals(encoded[i]!.subarray(FRAME_HEADER_BYTES)), `frame ${i}`);
      });
    }),
    fuzzParams(),
  );
});

/** msgpack values shaped like protocol payloads, often almost right (and raw bytes). */
const arbLeaf = fc.oneof(
  fc.nat(),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 80 }),
  fc.uint8Array({ maxLength: 40 }),
  fc.uint8Array({ minLength: HANDSHAKE_NONCE_BYTES, maxLength: HANDSHAKE_NONCE_BYTES }),
  fc.boolean(),
  fc.constant(null),
);
const arbValue = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, arbLeaf, fc.array(tie('value'), { maxLength: 13 })),
})).value;
const arbPayload = fc.oneof(
  arbValue.map((v) => Buffer.from(packFrame(FrameType.Hello, v).subarray(FRAME_HEADER_BYTES))),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
);

test('handshake, message and fetch decoders: typed values or a TransportError', {
  timeout: fuzzTimeoutMs(),
}, () => {
  fc.assert(
    fc.property(arbPayload, (payload) => {
      decodesOrRefuses(() => {
        const h = decodeHello(payload);
        assert.ok(typeof h.clusterId === 'string' && Number.isSafeInteger(h.from));
        assert.equal(h.nonce.length, HANDSHAKE_NONCE_BYTES);
      });
      decodesOrRefuses(() => assert.equal(decodeChallenge(payload).proof.length, 32));
      decodesOrRefuses(() => assert.equal(decodeAuth(payload).length, 32));
      decodesOrRefuses(() => assert.equal(typeof decodeRefusal(payload), 'string'));
      decodesOrRefuses(() => {
        for (const m of decodeMessages(payload)) {
          assert.ok(Array.isArray(m.entries) && m.context instanceof Uint8Array);
        }
      });
      decodesOrRefuses(() => assert.ok(decodeSnapBegin(payload).message.snapshot !== null));
      decodesOrRefuses(() => decodeFetchRequest(unpackPayload(payload)));
      decodesOrRefuses(() => decodeFetchResponse(unpackPayload(payload)));
    }),
    fuzzParams(4),
  );
});

/** A socket that records what the connection writes; `feed` plays the peer's bytes. */
class FakeSocket extends EventEmitter {
  bytesRead = 0;
  destroyed = false;
  readonly remoteAddress = '127.0.0.9';
  setNoDelay(): void {}
  write(): boolean {
    return true;
  }
  end(): void {
    this.destroy();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
  feed(chunk: Buffer): void {
    if (this.destroyed) return;
    this.bytesRead += chunk.length;
    this.emit('data', chunk);
  }
}

const SECRET = clusterSecret('fuzz-secret-0123456789abcdef');

function fuzzContext(delivered: unknown[]): TransportContext {
  return {
    localId: 2,
    clusterId: 'c1',
    secret: SECRET,
    limits: resolveLimits({ handshakeTimeoutMs: 60_000 }),
    logger: SILENT_LOGGER,
    timers: REAL_CLOCK,
    random: new Prng(1),
    connectEvent: 'connect',
    dial: () => {
      throw new Error('not in this test');
    },
    deliver: (m) => void delivered.push(m),
    report: () => {},
    nextSnapshotId: () => 1,
    inboundFrom: () => 0,
    inboundOpened: () => void delivered.push('opened'),
    admits: () => true,
    peerCertificateRefusal: () => null,
    trafficOf: () => ({ sentBytes: 0, receivedBytes: 0 }),
    roundTrip: () => {},
    reserveSnapshotBytes: () => true,
    releaseSnapshotBytes: () => {},
    answerFetch: () => {
      delivered.push('fetch');
      throw new Error('fetch answered before authentication');
    },
  };
}

test('the accepting side: no sequence of frames without the secret gets anything delivered', {
  timeout: fuzzTimeoutMs(),
}, () => {
  // Frames a stranger might send: a well-formed HELLO (so the challenge is reached), payloads of
  // every type, garbage, in any order and chunking.
  const arbHello = fc
    .record({
      from: fc.nat({ max: 10 }),
      to: fc.constantFrom(2, 3),
      nonce: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    })
    .map((h) => Buffer.from(encodeHello({ clusterId: 'c1', ...h })));
  const arbTyped = fc
    .tuple(fc.constantFrom(...FRAME_TYPES), arbValue)
    .map(([type, v]) => Buffer.from(packFrame(type, v)));
  const arbAuth = fc
    .uint8Array({ minLength: 32, maxLength: 32 })
    .map((proof) => Buffer.from(encodeAuth(proof)));
  const arbMessages = fc
    .record({ from: fc.constantFrom(1, 3, 5), term: fc.nat({ max: 1000 }) })
    .map(({ from, term }) =>
      Buffer.from(
        encodeMessagesFrame([
          {
            type: MessageType.Heartbeat,
            to: 2,
            from,
            term,
            logTerm: 0,
            index: 0,
            commit: 0,
            reject: false,
            rejectHint: 0,
            context: new Uint8Array(0),
            entries: [],
            snapshot: null,
          },
        ]),
      ),
    );
  const arbSession = fc
    .array(fc.oneof(arbHello, arbAuth, arbMessages, arbTyped, arbFrame), {
      minLength: 1,
      maxLength: 6,
    })
    .map((parts) => Buffer.concat(parts));
  fc.assert(
    fc.property(arbSession, fc.array(fc.nat(), { maxLength: 8 }), (stream, cuts) => {
      const delivered: unknown[] = [];
      const socket = new FakeSocket();
      const conn = new InboundConnection(
        fuzzContext(delivered),
        socket as unknown as Socket,
        'fuzz',
        () => {},
      );
      const largest = largestAllocation(() => {
        for (const chunk of split(stream, cuts)) socket.feed(chunk);
      });
      conn.destroy();
      assert.deepEqual(delivered, [], 'nothing reaches the member without the secret');
      assert.ok(largest <= HANDSHAKE_FRAME_BYTES_MAX, `allocated ${largest} before authentication`);
    }),
    fuzzParams(),
  );
});
