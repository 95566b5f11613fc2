/**
 * Encode + decode of one Raft message on the peer wire, the binary codec (message-codec.ts)
 * beside the msgpack positional-array codec it replaced (kept below as the baseline, as it was).
 * Cases: an AppendEntries (MsgApp) carrying 1, 8 or 64 entries of 300 bytes, and an AppendResp.
 * Each case runs in interleaved rounds (old, new, old, new, ...) so both meet the same load;
 * prints µs per message (minimum and median over rounds), the ratio of the two codecs' batches
 * per round (median and interquartile range), bytes on the wire, and the load average.
 * Bounded: ~5 ms per batch, 80 rounds, ~5 s in all on an idle machine.
 *
 *   node --import tsx bench/peer-codec.ts [--rounds 80]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import {
  type Entry,
  EntryType,
  MESSAGE_TYPE_NAMES,
  type Message,
  MessageType,
} from '../src/raft/types.js';
import {
  expectArray,
  expectBool,
  expectBytes,
  expectUint,
  packFrame,
  unpackPayload,
} from '../src/transport/codec.js';
import { TransportError } from '../src/transport/errors.js';
import { FrameType } from '../src/transport/frame.js';
import { FRAME_HEADER_BYTES } from '../src/transport/limits.js';
import { decodeMessages, encodeMessagesFrame } from '../src/transport/message-codec.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '80' } } });
const ROUNDS = Math.max(1, Math.min(500, Number(values.rounds)));
const BATCH_MS = 5;
const ENTRY_DATA_BYTES = 300;

// ---------------------------------------------------------------------------------------------
// The baseline: the msgpack codec as it was before the binary one (snapshots left out: the
// cases below carry none).

function oldTuple(m: Message): unknown[] {
  const entries = m.entries.map((e) => [e.term, e.index, e.type, e.data]);
  return [
    m.type,
    m.to,
    m.from,
    m.term,
    m.logTerm,
    m.index,
    m.commit,
    m.reject,
    m.rejectHint,
    m.context,
    entries,
    null,
  ];
}

function oldDecodeEntry(v: unknown): Entry {
  const t = expectArray(v, 4, 'entry');
  const type = expectUint(t[2], 'entry.type');
  if (type !== EntryType.Normal && type !== EntryType.ConfChange) {
    throw new TransportError('TRANSPORT_FRAME_MALFORMED', 'entry.type');
  }
  return {
    term: expectUint(t[0], 'entry.term'),
    index: expectUint(t[1], 'entry.index'),
    type,
    data: expectBytes(t[3], 'entry.data'),
  };
}

function oldDecodeMessage(v: unknown): Message {
  const t = expectArray(v, 12, 'message');
  const type = expectUint(t[0], 'message.type');
  if (MESSAGE_TYPE_NAMES[type as MessageType] === undefined) {
    throw new TransportError('TRANSPORT_FRAME_MALFORMED', 'message.type');
  }
  const raw = expectArray(t[10], -1, 'message.entries');
  const entries = new Array<Entry>(raw.length);
  for (let i = 0; i < raw.length; i++) entries[i] = oldDecodeEntry(raw[i]);
  if (t[11] !== null) throw new TransportError('TRANSPORT_FRAME_MALFORMED', 'snapshot');
  return {
    type: type as MessageType,
    to: expectUint(t[1], 'message.to'),
    from: expectUint(t[2], 'message.from'),
    term: expectUint(t[3], 'message.term'),
    logTerm: expectUint(t[4], 'message.logTerm'),
    index: expectUint(t[5], 'message.index'),
    commit: expectUint(t[6], 'message.commit'),
    reject: expectBool(t[7], 'message.reject'),
    rejectHint: expectUint(t[8], 'message.rejectHint'),
    context: expectBytes(t[9], 'message.context'),
    entries,
    snapshot: null,
  };
}

// ---------------------------------------------------------------------------------------------

interface Codec {
  readonly name: string;
  /** Encodes `m` as a frame and decodes it back; returns the frame's size. */
  roundTrip(m: Message): number;
}

const OLD: Codec = {
  name: 'msgpack',
  roundTrip(m) {
    const frame = packFrame(FrameType.Messages, [oldTuple(m)]);
    const list = expectArray(unpackPayload(frame.subarray(FRAME_HEADER_BYTES)), -1, 'messages');
    const decoded = oldDecodeMessage(list[0]);
    if (decoded.entries.length !== m.entries.length) throw new Error('round trip lost entries');
    return frame.length;
  },
};

const NEW: Codec = {
  name: 'binary',
  roundTrip(m) {
    const frame = encodeMessagesFrame([m]);
    const decoded = decodeMessages(frame.subarray(FRAME_HEADER_BYTES))[0]!;
    if (decoded.entries.length !== m.entries.length) throw new Error('round trip lost entries');
    return frame.length;
  },
};

function message(type: MessageType, entryCount: number): Message {
  const base = 1_000_000 + Math.floor(Math.random() * 1000);
  const entries: Entry[] = [];
  for (let i = 0; i < entryCount; i++) {
    const data = Buffer.alloc(ENTRY_DATA_BYTES);
    for (let j = 0; j < data.length; j++) data[j] = (i * 31 + j * 7) & 0xff;
    entries.push({ term: 7, index: base + i, type: EntryType.Normal, data });
  }
  return {
    type,
    to: 2,
    from: 1,
    term: 7,
    logTerm: 7,
    index: base - 1,
    entries,
    commit: base - 3,
    snapshot: null,
    reject: false,
    rejectHint: 0,
    context: new Uint8Array(0),
  };
}

/**
 * µs per round trip over a short batch (~BATCH_MS), `iterations` fixed per case. Short batches,
 * many rounds, and the minimum beside the median: on a shared machine a batch is often
 * preempted, and the least-disturbed batch is the closest to the codec's own cost.
 */
function timeBatch(codec: Codec, m: Message, iterations: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) codec.roundTrip(m);
  return Number(process.hrtime.bigint() - start) / 1000 / iterations;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

function median(xs: number[]): number {
  return quantile(xs, 0.5);
}

const cases: [string, Message][] = [
  ['MsgApp, 1 entry of 300 B', message(MessageType.App, 1)],
  ['MsgApp, 8 entries', message(MessageType.App, 8)],
  ['MsgApp, 64 entries', message(MessageType.App, 64)],
  ['MsgAppResp', message(MessageType.AppResp, 0)],
];

const loadStart = loadavg()[0]!.toFixed(2);
const lines: string[] = [
  `Node ${process.version}, ${ROUNDS} interleaved rounds of ~${BATCH_MS} ms per codec and case; load average (1 min) ${loadStart} at the start`,
  '',
  '| case | bytes msgpack / binary | µs msgpack (min, median) | µs binary (min, median) | binary / msgpack: ratio of minima; median (IQR) over rounds |',
  '|---|--:|--:|--:|--:|',
];
for (const [name, m] of cases) {
  // Warm up both (JIT), then size the batch from the slower one.
  let warm = 0;
  const warmStart = performance.now();
  while (performance.now() - warmStart < 200) {
    OLD.roundTrip(m);
    NEW.roundTrip(m);
    warm++;
  }
  const iterations = Math.max(10, Math.round((warm * BATCH_MS) / 200));
  const oldUs: number[] = [];
  const newUs: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const a = timeBatch(OLD, m, iterations);
    const b = timeBatch(NEW, m, iterations);
    oldUs.push(a);
    newUs.push(b);
    ratios.push(b / a);
  }
  const bytes = `${OLD.roundTrip(m)} / ${NEW.roundTrip(m)}`;
  const minOld = Math.min(...oldUs);
  const minNew = Math.min(...newUs);
  const ratio = `${(minNew / minOld).toFixed(2)}×; ${median(ratios).toFixed(2)}× (${quantile(ratios, 0.25).toFixed(2)}–${quantile(ratios, 0.75).toFixed(2)})`;
  const us = (xs: number[], min: number): string => `${min.toFixed(2)}, ${median(xs).toFixed(2)}`;
  lines.push(`| ${name} | ${bytes} | ${us(oldUs, minOld)} | ${us(newUs, minNew)} | ${ratio} |`);
}
lines.push('', `Load average (1 min) at the end: ${loadavg()[0]!.toFixed(2)}.`);
process.stdout.write(`${lines.join('\n')}\n`);
