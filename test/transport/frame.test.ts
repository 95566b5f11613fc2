import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageType } from '../../src/raft/types.js';
import { packFrame } from '../../src/transport/codec.js';
import { TransportError } from '../../src/transport/errors.js';
import { FrameDecoder, FrameType, writeFrameHeader } from '../../src/transport/frame.js';
import { FRAME_HEADER_BYTES, resolveLimits } from '../../src/transport/limits.js';
import {
  decodeMessages,
  encodeMessagesFrame,
  messageBytes,
} from '../../src/transport/message-codec.js';
import { FixedRing } from '../../src/transport/ring.js';
import { Prng } from '../../src/util/prng.js';
import { ALL_MESSAGE_TYPES, canon, msg } from './helpers.js';

function collect(limit = 1 << 20) {
  const frames: { type: FrameType; payload: Buffer }[] = [];
  const decoder = new FrameDecoder(
    { onFrame: (type, payload) => frames.push({ type, payload: Buffer.from(payload) }) },
    limit,
  );
  return { frames, decoder };
}

function sampleFrames(): Buffer[] {
  return [
    packFrame(FrameType.Hello, ['c', 1, 2]),
    encodeMessagesFrame([msg({ type: MessageType.Heartbeat })]),
    packFrame(FrameType.SnapAck, [7, 1 << 20]),
  ];
}

test('frames split at every byte boundary decode identically', () => {
  const frames = sampleFrames();
  const stream = Buffer.concat(frames);
  for (let cut = 0; cut <= stream.length; cut++) {
    for (const step of [1, 3, 1000]) {
      const { frames: out, decoder } = collect();
      decoder.push(stream.subarray(0, cut));
      for (let i = cut; i < stream.length; i += step) decoder.push(stream.subarray(i, i + step));
      assert.equal(out.length, frames.length, `cut ${cut} step ${step}`);
      for (let i = 0; i < frames.length; i++) {
        assert.equal(out[i]!.type, frames[i]![5]);
        assert.deepEqual(out[i]!.payload, frames[i]!.subarray(FRAME_HEADER_BYTES));
      }
    }
  }
});

test('an oversized length, a wrong version or an unknown type is a typed error', () => {
  const cases: [Buffer, string][] = [];
  const big = Buffer.alloc(FRAME_HEADER_BYTES);
  writeFrameHeader(big, 0, FrameType.Messages, 4096);
  cases.push([big, 'TRANSPORT_FRAME_SIZE']);
  const tiny = Buffer.from([0, 0, 0, 1, 1, 4]);
  cases.push([tiny, 'TRANSPORT_FRAME_SIZE']);
  const version = packFrame(FrameType.Hello, ['c', 1, 2]);
  version[4] = 99;
  cases.push([version, 'TRANSPORT_FRAME_VERSION']);
  const type = packFrame(FrameType.Hello, ['c', 1, 2]);
  type[5] = 200;
  cases.push([type, 'TRANSPORT_FRAME_TYPE']);
  for (const [bytes, code] of cases) {
    const { decoder } = collect(1024);
    assert.throws(
      () => decoder.push(bytes),
      (err: unknown) => err instanceof TransportError && err.code === code,
    );
  }
});

test('writeFrameHeader refuses a payload over the frame limit', () => {
  assert.throws(
    () => writeFrameHeader(Buffer.alloc(6), 0, FrameType.Messages, 16 * 1024 * 1024),
    (err: unknown) => err instanceof TransportError && err.code === 'TRANSPORT_FRAME_SIZE',
  );
});

test('every message type round-trips through the codec, with binary data', () => {
  const rng = new Prng(11);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => rng.int(256));
  for (const type of ALL_MESSAGE_TYPES) {
    const m = msg({
      type,
      to: 3,
      from: 9,
      term: 2 ** 40 + 5,
      logTerm: 7,
      index: 2 ** 52,
      commit: 123,
      reject: type % 2 === 0,
      rejectHint: 4,
      context: bytes(type),
      entries: [
        { term: 1, index: 2, type: 0, data: bytes(300) },
        { term: 1, index: 3, type: 1, data: new Uint8Array(0) },
        { term: 1, index: 4, type: 0, data: Uint8Array.from([0, 255, 0xc1, 0xd4]) },
      ],
      snapshot:
        type === MessageType.Snap
          ? {
              metadata: {
                index: 10,
                term: 2,
                confState: {
                  voters: [1, 2, 3],
                  learners: [4],
                  votersOutgoing: [1, 2, 5],
                  learnersNext: [5],
                  autoLeave: true,
                },
              },
              data: bytes(1000),
            }
          : null,
    });
    const frame = encodeMessagesFrame([m]);
    assert.equal(frame.length, FRAME_HEADER_BYTES + 4 + messageBytes(m), 'the size is exact');
    const decoded = decodeMessages(frame.subarray(FRAME_HEADER_BYTES));
    assert.equal(decoded.length, 1);
    assert.deepEqual(canon(decoded[0]), canon(m));
  }
});

test('malformed payloads are rejected field by field, naming the field', () => {
  const good = encodeMessagesFrame([
    msg({
      type: MessageType.App,
      entries: [{ term: 1, index: 2, type: 0, data: Buffer.from('x') }],
    }),
  ]).subarray(FRAME_HEADER_BYTES);
  decodeMessages(good); // the control: unmodified, it decodes
  // [offset in the payload, bytes written there, what the error names]. The payload is a u32
  // count, then the message: type at 4, flags at 5, to at 6 … rejectHint at 54, context length
  // at 62, entry count at 66, then the entry (term 70, index 78, type 86, data length 87).
  const mutations: [number, number[], RegExp][] = [
    [0, [0, 0, 0, 0], /message count 0/],
    [0, [1, 4, 0, 0], /message count 1025 outside/],
    [0, [2, 0, 0, 0], /messages needs/],
    [4, [99], /message.type 99/],
    [5, [4], /message.flags 4/],
    [13, [0x20], /message.to above 2\^53/],
    [62, [200], /message.context needs/],
    [66, [0xff, 0xff, 0xff, 0x7f], /message.entries needs/],
    [86, [7], /entry.type 7/],
    [87, [2], /entry.data needs/],
    [5, [2], /snapshot needs/], // a snapshot flagged, none there
  ];
  for (const [offset, bytes, error] of mutations) {
    const bad = Buffer.from(good);
    bad.set(bytes, offset);
    assert.throws(
      () => decodeMessages(bad),
      (err: unknown) =>
        err instanceof TransportError &&
        err.code === 'TRANSPORT_FRAME_MALFORMED' &&
        error.test(err.message),
      `offset ${offset}: ${error}`,
    );
  }
  // Trailing bytes after the last message.
  assert.throws(
    () => decodeMessages(Buffer.concat([good, Buffer.from([0])])),
    /1 bytes after the messages/,
  );
});

test('FixedRing is bounded, FIFO, and tracks bytes', () => {
  const ring = new FixedRing<number>(5);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 5; i++) ring.push(i, 10 + i);
    assert.ok(ring.isFull());
    assert.throws(() => ring.push(9, 1));
    assert.equal(ring.bytes, 60);
    assert.equal(ring.peekSize(), 10);
    assert.equal(ring.shift(), 0);
    ring.push(5, 15);
    for (let i = 1; i <= 5; i++) assert.equal(ring.shift(), i);
    assert.equal(ring.length, 0);
    assert.equal(ring.bytes, 0);
  }
});

test('limits: overrides may lower, never raise, and must agree', () => {
  assert.equal(resolveLimits({ queueMessagesMax: 8 }).queueMessagesMax, 8);
  assert.throws(() => resolveLimits({ frameBytesMax: 64 * 1024 * 1024 }), TransportError);
  assert.throws(() => resolveLimits({ snapshotWindowBytes: 1024, snapshotChunkBytes: 4096 }));
  assert.throws(() => resolveLimits({ backoffMinMs: 500, backoffMaxMs: 100 }));
  assert.throws(() => resolveLimits({ dialTimeoutMs: 0 }));
});
