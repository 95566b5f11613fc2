/**
 * Fuzzing what a member reads from disk and from its operator (budget: ./budget.ts): WAL
 * records (single frames with valid and broken checksums, whole segments scanned with damage
 * stepping), snapshot files, and configuration files. Properties: no exception but the
 * documented refusal, every decoded record lies inside its buffer, no allocation beyond the
 * input's size, and a config error never echoes the cluster secret.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import fc from 'fast-check';
import { ConfigError, configSchema, loadConfig } from '../../src/cli/config.js';
import { decodeSnapshotFile, encodeSnapshotFile } from '../../src/storage/snapshot/store.js';
import {
  decodeEntry,
  decodeFrame,
  decodeHardState,
  decodeSegmentHeader,
  decodeSnapshot,
  positionSeed,
  RecordType,
} from '../../src/storage/wal/format.js';
import { scanSegment } from '../../src/storage/wal/scan.js';
import { fuzzParams, fuzzTimeoutMs, largestAllocation } from './budget.js';

const dir = mkdtempSync(join(tmpdir(), 'tandem-fuzz-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A WAL frame at `at` with a correct checksum (so decoding gets past it) over random fields. */
function sealedFrame(
  payload: Uint8Array,
  typeWord: number,
  seq: number,
  at: number,
  lengthLie: number | null,
): Uint8Array {
  // 8-byte aligned, as frames are laid out in a segment.
  const bytes = new Uint8Array(Math.ceil((16 + payload.length) / 8) * 8);
  const view = new DataView(bytes.buffer);
  view.setUint32(4, lengthLie ?? payload.length, true);
  view.setUint32(8, typeWord, true);
  bytes.set(payload, 16);
  // Sealed over what a decoder believing the length reads when this frame ends the buffer.
  const end = 16 + (lengthLie ?? payload.length);
  view.setUint32(0, crc32c(bytes.subarray(4, end), positionSeed(seq, at)), true);
  return bytes;
}

const arbRecord = fc.record({
  payload: fc.uint8Array({ maxLength: 120 }),
  type: fc.oneof(
    fc.constantFrom(
      RecordType.SegmentHeader,
      RecordType.Entry,
      RecordType.HardState,
      RecordType.Snapshot,
    ),
    fc.nat({ max: 0xffffffff }),
  ),
  lengthLie: fc.oneof(fc.constant(null), fc.nat({ max: 300 }), fc.nat({ max: 0xffffffff })),
});

test('WAL: any record decodes inside its buffer or is refused with a reason', {
  timeout: fuzzTimeoutMs(),
}, () => {
  fc.assert(
    fc.property(
      fc.array(arbRecord, { minLength: 1, maxLength: 6 }),
      fc.nat({ max: 1000 }),
      fc.boolean(),
      (records, seq, garble) => {
        // Frames laid out one after the other, each sealed for its own offset.
        const parts: Uint8Array[] = [];
        let at = 0;
        for (const r of records) {
          const f = sealedFrame(r.payload, r.type, seq, at, r.lengthLie);
          parts.push(f);
          at += f.length;
        }
        const buf = new Uint8Array(at);
        let o = 0;
        for (const p of parts) {
          buf.set(p, o);
          o += p.length;
        }
        if (garble && buf.length > 0) buf[seq % buf.length]! ^= 0x5a;
        const view = new DataView(buf.buffer);
        const largest = largestAllocation(() => {
          for (let offset = 0; offset < buf.length; offset += 8) {
            const frame = decodeFrame(buf, view, offset, seq);
            if (!frame.ok) {
              assert.equal(typeof frame.reason, 'string');
              continue;
            }
            assert.ok(frame.payloadAt + frame.payloadBytes <= buf.length, 'inside the buffer');
            const { payloadAt: p, payloadBytes: n } = frame;
            // Each payload decoder returns a value or null, never throws.
            decodeSegmentHeader(view, p, n);
            const entry = decodeEntry(buf, view, p, n);
            if (entry !== null) assert.ok(entry.data.length <= n);
            decodeHardState(view, p, n);
            decodeSnapshot(view, p, n);
          }
          // A whole segment made of these, damage stepped over: a result, never a crash.
          scanSegment([{ bytes: buf, view }], seq, () => {}, { onDamage: () => {} });
        });
        assert.ok(largest <= buf.length + 64, `allocated ${largest} for ${buf.length} bytes`);
      },
    ),
    fuzzParams(),
  );
});

test('snapshot files: random or damaged bytes are refused with a reason, intact ones round-trip', {
  timeout: fuzzTimeoutMs(),
}, () => {
  const arbSnapshot = fc.record({
    index: fc.nat({ max: 2 ** 40 }),
    term: fc.nat({ max: 2 ** 30 }),
    voters: fc.uniqueArray(fc.integer({ min: 1, max: 2 ** 52 }), { maxLength: 5 }),
    data: fc.uint8Array({ maxLength: 300 }),
  });
  fc.assert(
    fc.property(
      arbSnapshot,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 3 }),
      fc.option(fc.nat()),
      fc.uint8Array({ maxLength: 200 }),
      (s, flips, cut, noise) => {
        const snapshot = {
          metadata: {
            index: s.index,
            term: s.term,
            confState: {
              voters: s.voters,
              learners: [],
              votersOutgoing: [],
              learnersNext: [],
              autoLeave: false,
            },
          },
          data: s.data,
        };
        const file = encodeSnapshotFile(snapshot);
        const intact = decodeSnapshotFile(file);
        assert.notEqual(typeof intact, 'string');
        const damaged = Uint8Array.from(file);
        for (const [at, x] of flips) damaged[at % damaged.length]! ^= x;
        const shortened = cut === null ? damaged : damaged.subarray(0, cut % (damaged.length + 1));
        for (const bytes of [shortened, noise]) {
          const got = decodeSnapshotFile(bytes);
          if (typeof got === 'string') continue;
          // Accepted: it must be the original (a flip that the CRC missed is a 2^-32 event).
          assert.deepEqual(got.metadata, snapshot.metadata);
          assert.deepEqual(Buffer.from(got.data), Buffer.from(s.data));
        }
      },
    ),
    fuzzParams(),
  );
});

const SECRET_TEXT = 'fuzz-secret-never-printed-0123456789';

/** YAML-ish text: random structure with the real field names, often almost right. */
const FIELD_NAMES = [
  'name',
  'dataDir',
  'listen',
  'client',
  'peer',
  'admin',
  'peers',
  'addresses',
  'cluster',
  'state',
  'token',
  'secret',
  'secretFile',
  'replication',
  'voters',
  'raft',
  'heartbeatMs',
  'electionMs',
  'testMode',
  'faultInjection',
  'quota',
  'backendBytes',
  'tls',
];
const arbScalar = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom('127.0.0.1:2380', '0.0.0.0:1', '[::1]:2', '10s', '64MiB', SECRET_TEXT, 'n1'),
);
const arbConfig = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: 'small' },
    arbScalar,
    fc.array(tie('node'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom(...FIELD_NAMES), tie('node'), { maxKeys: 6 }),
  ),
})).node;

test('config: any structure, any text: a config or a ConfigError, never the secret in a message', {
  timeout: fuzzTimeoutMs(),
}, () => {
  const file = join(dir, 'fuzz.yaml');
  fc.assert(
    fc.property(
      fc.dictionary(fc.constantFrom(...FIELD_NAMES), arbConfig, { maxKeys: 8 }),
      fc.string({ maxLength: 300 }),
      (structure, text) => {
        // The structure through the schema (pure), with a too-short secret it must not echo.
        const parsed = configSchema('/srv').safeParse({
          ...structure,
          cluster: { secret: 'zq9x!' },
        });
        assert.equal(parsed.success, false);
        for (const issue of parsed.error!.issues) assert.doesNotMatch(issue.message, /zq9x!/);
        // Then as files through the loader (YAML): a config or a ConfigError, nothing else.
        const contents = [
          JSON.stringify(structure),
          text,
          `cluster: { secret: ${SECRET_TEXT} }\n${text}`,
        ];
        contents.forEach((content, i) => {
          writeFileSync(file, content);
          try {
            loadConfig({ file, env: {}, checkFiles: false });
          } catch (error) {
            if (!(error instanceof ConfigError)) throw error;
            if (i === 2) assert.doesNotMatch(error.message, new RegExp(SECRET_TEXT));
          }
        });
      },
    ),
    fuzzParams(0.5),
  );
});
