/** The zeroed-space skips of the WAL scan agree with a byte-at-a-time reading. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { firstNonZero, nonZeroEnd } from '../../src/storage/wal/scan.js';

/** Mostly zeros, with a few nonzero bytes anywhere (chunk boundaries included). */
const sparse = fc
  .tuple(
    fc.integer({ min: 0, max: 200_000 }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
  )
  .map(([length, marks]) => {
    const bytes = new Uint8Array(length);
    for (const [at, value] of marks) if (length > 0) bytes[at % length] = value;
    return bytes;
  });

function naiveFirst(bytes: Uint8Array, from: number, end: number): number {
  for (let i = from; i < end; i++) if (bytes[i] !== 0) return i;
  return -1;
}

function naiveEnd(bytes: Uint8Array, from: number): number {
  for (let i = bytes.length - 1; i >= from; i--) if (bytes[i] !== 0) return i + 1;
  return from;
}

test('firstNonZero and nonZeroEnd match a byte-at-a-time scan', () => {
  fc.assert(
    fc.property(sparse, fc.nat(), fc.nat(), (bytes, a, b) => {
      const from = bytes.length === 0 ? 0 : a % (bytes.length + 1);
      const end = from + (bytes.length - from === 0 ? 0 : b % (bytes.length - from + 1));
      assert.equal(firstNonZero(bytes, from, end), naiveFirst(bytes, from, end));
      assert.equal(nonZeroEnd(bytes, from), naiveEnd(bytes, from));
    }),
    { numRuns: 300 },
  );
});

test('a byte just past a 64 KiB chunk of zeros is found from either end', () => {
  const bytes = new Uint8Array(3 * 65_536 + 5);
  bytes[2 * 65_536] = 7;
  assert.equal(firstNonZero(bytes, 0, bytes.length), 2 * 65_536);
  assert.equal(firstNonZero(bytes, 2 * 65_536 + 1, bytes.length), -1);
  assert.equal(nonZeroEnd(bytes, 0), 2 * 65_536 + 1);
  assert.equal(nonZeroEnd(bytes, 2 * 65_536 + 1), 2 * 65_536 + 1);
});
