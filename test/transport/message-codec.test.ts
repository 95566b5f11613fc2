/**
 * The binary Raft message codec (message-codec.ts), by property: any batch of messages of any
 * type (entries, snapshots, joint conf states, ids and terms up to 2^53 - 1) decodes to itself;
 * `messageBytes` is exactly the encoded size (so the byte limits, which need an upper bound, never
 * undercount); every truncation of a valid payload is refused with a TransportError, and every
 * corruption either decodes to well-formed messages or is refused, never anything else.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  type ConfState,
  type Entry,
  EntryType,
  MESSAGE_TYPE_NAMES,
  type Message,
  MessageType,
  type Snapshot,
} from '../../src/raft/types.js';
import { TransportError } from '../../src/transport/errors.js';
import { FrameDecoder, FrameType } from '../../src/transport/frame.js';
import {
  BATCH_MESSAGES_MAX,
  ENTRY_OVERHEAD_BYTES,
  FRAME_HEADER_BYTES,
  FRAME_OVERHEAD_BYTES,
  MESSAGE_OVERHEAD_BYTES,
} from '../../src/transport/limits.js';
import {
  decodeMessages,
  decodeSnapBegin,
  encodeMessagesFrame,
  encodeSnapBeginFrame,
  MESSAGES_HEADER_BYTES,
  messageBytes,
  SNAP_BEGIN_HEADER_BYTES,
  withSnapshotData,
} from '../../src/transport/message-codec.js';
import { fuzzParams, fuzzTimeoutMs } from '../fuzz/budget.js';
import { canon } from './helpers.js';

/** Edges first: 0, the u32 boundary, the largest safe integer; then anything safe. */
const arbUint = fc.oneof(
  fc.constantFrom(0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 52, Number.MAX_SAFE_INTEGER),
  fc.nat(),
  fc.maxSafeNat(),
);
const arbBytes = fc.oneof(
  fc.uint8Array({ maxLength: 40 }),
  fc.uint8Array({ minLength: 250, maxLength: 600 }),
);
const arbEntry: fc.Arbitrary<Entry> = fc.record({
  term: arbUint,
  index: arbUint,
  type: fc.constantFrom(EntryType.Normal, EntryType.ConfChange),
  data: arbBytes,
});
const arbIds = fc.array(arbUint, { maxLength: 7 });
const arbConfState: fc.Arbitrary<ConfState> = fc.record({
  voters: arbIds,
  learners: arbIds,
  votersOutgoing: arbIds,
  learnersNext: arbIds,
  autoLeave: fc.boolean(),
});
const arbSnapshot: fc.Arbitrary<Snapshot> = fc.record({
  metadata: fc.record({ index: arbUint, term: arbUint, confState: arbConfState }),
  data: arbBytes,
});
const arbMessage: fc.Arbitrary<Message> = fc.record({
  type: fc.constantFrom(...Object.values(MessageType)),
  to: arbUint,
  from: arbUint,
  term: arbUint,
  logTerm: arbUint,
  index: arbUint,
  entries: fc.array(arbEntry, { maxLength: 8 }),
  commit: arbUint,
  snapshot: fc.option(arbSnapshot, { freq: 3, nil: null }),
  reject: fc.boolean(),
  rejectHint: arbUint,
  context: arbBytes,
});
const arbBatch = fc.array(arbMessage, { minLength: 1, maxLength: 6 });

function payloadOf(frame: Buffer): Buffer {
  return frame.subarray(FRAME_HEADER_BYTES);
}

/** What every decoded message must be, whatever bytes it came from. */
function assertWellFormed(m: Message): void {
  assert.ok(MESSAGE_TYPE_NAMES[m.type] !== undefined, `type ${m.type}`);
  for (const n of [m.to, m.from, m.term, m.logTerm, m.index, m.commit, m.rejectHint]) {
    assert.ok(Number.isSafeInteger(n) && n >= 0, `integer ${n}`);
  }
  assert.equal(typeof m.reject, 'boolean');
  assert.ok(m.context instanceof Uint8Array);
  for (const e of m.entries) {
    assert.ok(e.type === EntryType.Normal || e.type === EntryType.ConfChange);
    assert.ok(Number.isSafeInteger(e.term) && Number.isSafeInteger(e.index));
    assert.ok(e.data instanceof Uint8Array);
  }
  if (m.snapshot !== null) {
    const cs = m.snapshot.metadata.confState;
    for (const id of [...cs.voters, ...cs.learners, ...cs.votersOutgoing, ...cs.learnersNext]) {
      assert.ok(Number.isSafeInteger(id) && id >= 0);
    }
    assert.equal(typeof cs.autoLeave, 'boolean');
    assert.ok(m.snapshot.data instanceof Uint8Array);
  }
}

/** Decodes `payload`: well-formed messages or a TransportError, nothing else may come out. */
function decodesOrRefuses(payload: Buffer): 'decoded' | 'refused' {
  try {
    for (const m of decodeMessages(payload)) assertWellFormed(m);
    return 'decoded';
  } catch (error) {
    if (!(error instanceof TransportError)) throw error;
    assert.equal(error.code, 'TRANSPORT_FRAME_MALFORMED');
    return 'refused';
  }
}

test('any batch of messages decodes to itself; messageBytes is the exact encoded size', {
  timeout: fuzzTimeoutMs(),
}, () => {
  fc.assert(
    fc.property(arbBatch, (messages) => {
      const frame = encodeMessagesFrame(messages);
      const expected = messages.reduce((sum, m) => sum + messageBytes(m), MESSAGES_HEADER_BYTES);
      assert.equal(frame.length, FRAME_HEADER_BYTES + expected);
      assert.ok(frame.length - expected <= FRAME_OVERHEAD_BYTES);
      // Through the frame decoder too: the header says MESSAGES and the payload's length.
      const payloads: Buffer[] = [];
      new FrameDecoder(
        {
          onFrame: (type, payload) => {
            assert.equal(type, FrameType.Messages);
            payloads.push(payload);
          },
        },
        1 << 24,
      ).push(frame);
      assert.equal(payloads.length, 1);
      assert.deepEqual(canon(decodeMessages(payloads[0]!)), canon(messages));
    }),
    fuzzParams(),
  );
});

test('a snapshot header (SNAP_BEGIN) decodes to itself, without the data it announces', {
  timeout: fuzzTimeoutMs(),
}, () => {
  fc.assert(
    fc.property(arbMessage, arbSnapshot, fc.nat(), arbUint, (m, snapshot, id, total) => {
      const message: Message = { ...m, type: MessageType.Snap, snapshot };
      const frame = encodeSnapBeginFrame(id, total, message);
      assert.equal(
        frame.length,
        FRAME_HEADER_BYTES + SNAP_BEGIN_HEADER_BYTES + messageBytes(message, false),
      );
      const begin = decodeSnapBegin(payloadOf(frame));
      assert.equal(begin.snapshotId, id);
      assert.equal(begin.totalBytes, total);
      assert.equal(begin.message.snapshot?.data.length, 0);
      const whole = withSnapshotData(begin.message, snapshot.data);
      assert.deepEqual(canon(whole), canon(message));
    }),
    fuzzParams(),
  );
});

test('every truncation of a valid payload is a TransportError naming what is missing', {
  timeout: fuzzTimeoutMs(),
}, () => {
  fc.assert(
    fc.property(arbBatch, (messages) => {
      const payload = payloadOf(encodeMessagesFrame(messages));
      for (let length = 0; length < payload.length; length++) {
        assert.throws(
          () => decodeMessages(payload.subarray(0, length)),
          (err: unknown) =>
            err instanceof TransportError &&
            err.code === 'TRANSPORT_FRAME_MALFORMED' &&
            /needs \d+ bytes, \d+ left/.test(err.message),
          `cut at ${length} of ${payload.length}`,
        );
      }
    }),
    fuzzParams(0.2),
  );
});

test('any corruption of a valid payload decodes to well-formed messages or a TransportError', {
  timeout: fuzzTimeoutMs(),
}, () => {
  const arbCorruption = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
    minLength: 1,
    maxLength: 6,
  });
  let refused = 0;
  let decoded = 0;
  fc.assert(
    fc.property(arbBatch, arbCorruption, fc.nat(), (messages, writes, extra) => {
      const payload = Buffer.from(payloadOf(encodeMessagesFrame(messages)));
      for (const [at, value] of writes) payload[at % payload.length] = value;
      // Sometimes the corruption also cuts or extends the payload.
      const cut = extra % 3 === 0 ? payload.subarray(0, extra % payload.length) : payload;
      const grown = extra % 3 === 1 ? Buffer.concat([payload, Buffer.alloc(extra % 50)]) : cut;
      if (decodesOrRefuses(grown) === 'refused') refused++;
      else decoded++;
      // SNAP_BEGIN's decoder shares the message reader; the same bytes must not break it either.
      try {
        decodeSnapBegin(grown);
      } catch (error) {
        if (!(error instanceof TransportError)) throw error;
      }
    }),
    fuzzParams(),
  );
  // Both outcomes occur: corrupting a term's byte still decodes, a count's byte usually not.
  assert.ok(refused > 0 && decoded > 0, `refused ${refused}, decoded ${decoded}`);
});

test('a hostile count allocates nothing it cannot fill', () => {
  // A count of 2^32 - 1 messages or entries in a short payload is refused before any array of
  // that size exists: the decoder checks count × fixed size against the bytes left.
  const counts = Buffer.alloc(MESSAGES_HEADER_BYTES + MESSAGE_OVERHEAD_BYTES);
  counts.writeUInt32LE(BATCH_MESSAGES_MAX, 0);
  assert.throws(() => decodeMessages(counts), /messages needs/);
  const one = Buffer.from(payloadOf(encodeMessagesFrame([messageWith([])])));
  one.writeUInt32LE(0xffffffff, MESSAGES_HEADER_BYTES + MESSAGE_OVERHEAD_BYTES - 4);
  assert.throws(
    () => decodeMessages(one),
    new RegExp(`message.entries needs ${0xffffffff * ENTRY_OVERHEAD_BYTES} bytes`),
  );
});

function messageWith(entries: Entry[]): Message {
  return {
    type: MessageType.App,
    to: 2,
    from: 1,
    term: 1,
    logTerm: 0,
    index: 0,
    entries,
    commit: 0,
    snapshot: null,
    reject: false,
    rejectHint: 0,
    context: new Uint8Array(0),
  };
}

test('decoded data are views into the payload, not copies', () => {
  const data = Buffer.from('a value of some bytes');
  const payload = payloadOf(
    encodeMessagesFrame([messageWith([{ term: 1, index: 1, type: 0, data }])]),
  );
  const entry = decodeMessages(payload)[0]!.entries[0]!;
  assert.equal(entry.data.buffer, payload.buffer);
  assert.deepEqual(Buffer.from(entry.data), data);
});
