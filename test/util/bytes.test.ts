/**
 * The shared byte helpers against their definitions: compareBytes is Go's bytes.Compare (checked
 * against a byte-by-byte reference on random arrays, Buffers and offset views), prefixEnd bounds
 * exactly the keys with the prefix, concatBytes copies.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { bytesEqual, compareBytes, concatBytes, prefixEnd } from '../../src/util/bytes.js';

function referenceCompare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/** Small alphabet so that shared prefixes and 0xff bytes are common. */
const bytes = fc
  .array(fc.constantFrom(0, 1, 0x61, 0xfe, 0xff), { maxLength: 6 })
  .map((a) => Uint8Array.from(a));

/** The same bytes as a plain array, a Buffer, or a view at an offset into a larger array. */
const shaped = bytes.chain((b) =>
  fc.constantFrom(
    b,
    Buffer.from(b),
    (() => {
      const big = new Uint8Array(b.length + 3).fill(7);
      big.set(b, 2);
      return big.subarray(2, 2 + b.length);
    })(),
  ),
);

test('compareBytes and bytesEqual agree with a byte-by-byte reference', () => {
  fc.assert(
    fc.property(shaped, shaped, (a, b) => {
      assert.equal(Math.sign(compareBytes(a, b)), Math.sign(referenceCompare(a, b)));
      assert.equal(bytesEqual(a, b), referenceCompare(a, b) === 0);
    }),
    { numRuns: 2_000 },
  );
});

test('prefixEnd: every key with the prefix is below it, and no key above the prefix range is', () => {
  fc.assert(
    fc.property(shaped, bytes, bytes, (prefix, suffix, other) => {
      const end = prefixEnd(prefix);
      const allFf = prefix.every((x) => x === 0xff);
      if (allFf) {
        assert.deepEqual([...end], [0], 'no end: [0], every key from the prefix on');
        return;
      }
      const key = concatBytes(prefix, suffix);
      assert.ok(compareBytes(key, end) < 0, 'a key with the prefix is below the end');
      const hasPrefix =
        other.length >= prefix.length && bytesEqual(other.subarray(0, prefix.length), prefix);
      if (!hasPrefix && compareBytes(other, prefix) >= 0) {
        assert.ok(
          compareBytes(other, end) >= 0,
          'a key after the prefix range is not below the end',
        );
      }
    }),
    { numRuns: 2_000 },
  );
});

test('prefixEnd and concatBytes return new arrays, never views of their input', () => {
  const prefix = Buffer.from('a/');
  const end = prefixEnd(prefix);
  assert.deepEqual([...end], [...Buffer.from('a0')]);
  prefix[0] = 0x7a;
  assert.deepEqual([...end], [...Buffer.from('a0')], 'changing the prefix does not change the end');
  assert.deepEqual([...prefixEnd(Uint8Array.of(0x61, 0xff))], [0x62]);
  const a = Uint8Array.of(1, 2);
  const joined = concatBytes(a, Uint8Array.of(3));
  a[0] = 9;
  assert.deepEqual([...joined], [1, 2, 3]);
});
