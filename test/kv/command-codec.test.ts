/**
 * The log's KV command codec: the put fast path (command.ts's decodePutFast) must decode every
 * put encodeCommand writes, and whatever bytes it accepts it must decode exactly as the generic
 * msgpackr path does, so that members applying the same entry never differ.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type KvRequest, putRequest, rangeRequest } from '../../src/kv/api-types.js';
import {
  decodeCommand,
  decodeCommandGeneric,
  decodePutFast,
  encodeCommand,
} from '../../src/kv/mvcc/command.js';

const bytesArb = (max: number) => fc.uint8Array({ maxLength: max });
const leaseArb = fc.oneof(
  fc.constant(0n),
  fc.bigInt({ min: 0n, max: 127n }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
);
const putArb = fc.record({
  key: bytesArb(40),
  value: bytesArb(600),
  lease: leaseArb,
  prevKv: fc.boolean(),
  ignoreValue: fc.boolean(),
  ignoreLease: fc.boolean(),
});

/** The generic path's answer: a request, or the error's message. */
function generic(bytes: Uint8Array): KvRequest | string {
  try {
    return decodeCommandGeneric(bytes);
  } catch (e) {
    return (e as Error).message;
  }
}

function plain(req: KvRequest): unknown {
  // Compare bytes as arrays: views and copies of the same bytes are equal.
  return JSON.parse(
    JSON.stringify(req, (_k, v) =>
      typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? [...v] : v,
    ),
  );
}

describe('put commands: the fast path', () => {
  test('decodes every put encodeCommand writes, as the generic path does', () => {
    fc.assert(
      fc.property(putArb, (fields) => {
        const bytes = encodeCommand({ type: 'put', request: putRequest(fields) });
        const fast = decodePutFast(bytes);
        assert.notEqual(fast, null, 'an encoded put takes the fast path');
        assert.deepEqual(plain(fast!), plain(decodeCommandGeneric(bytes) as KvRequest));
        assert.deepEqual(plain(decodeCommand(bytes)), plain(fast!));
      }),
      { numRuns: 500 },
    );
  });

  test('bytes it accepts after damage decode as the generic path decodes them', () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        putArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 3,
        }),
        fc.nat(),
        (fields, flips, cut) => {
          const bytes = encodeCommand({ type: 'put', request: putRequest(fields) }).slice();
          for (const [at, b] of flips) bytes[at % bytes.length] = b;
          const damaged = cut % 4 === 0 ? bytes.subarray(0, cut % bytes.length) : bytes;
          const fast = decodePutFast(damaged);
          if (fast === null) return; // the generic path decides, as before
          accepted++;
          const slow = generic(damaged);
          assert.notEqual(
            typeof slow,
            'string',
            `generic refused what the fast path took: ${slow}`,
          );
          assert.deepEqual(plain(fast), plain(slow as KvRequest));
        },
      ),
      { numRuns: 3000 },
    );
    assert.ok(accepted > 100, `damaged puts still accepted sometimes (${accepted})`);
  });

  test('other commands and odd encodings take the generic path', () => {
    const range = encodeCommand({
      type: 'range',
      request: rangeRequest({ key: new Uint8Array([1]) }),
    });
    assert.equal(decodePutFast(range), null);
    assert.equal(decodeCommand(range).type, 'range');
    const put = encodeCommand({ type: 'put', request: putRequest({ key: new Uint8Array([1]) }) });
    const trailing = new Uint8Array([...put, 0xc0]);
    assert.equal(decodePutFast(trailing), null, 'trailing bytes');
    assert.equal(decodePutFast(put.subarray(0, put.length - 1)), null, 'truncated');
  });

  test('a uint64 lease above 2^63 decodes unsigned, as msgpackr does', () => {
    const put = encodeCommand({
      type: 'put',
      request: putRequest({ key: new Uint8Array([1]), lease: -1n }),
    }).slice();
    const at = put.findIndex((b, i) => b === 0xd3 && put[i + 1] === 0xff && put[i + 8] === 0xff);
    assert.ok(at >= 0, 'the lease is an int64');
    put[at] = 0xcf; // the same eight bytes as a uint64: 2^64 - 1
    const fast = decodePutFast(put);
    assert.ok(fast !== null && fast.type === 'put');
    assert.equal(fast.request.lease, 2n ** 64n - 1n);
    assert.deepEqual(plain(fast), plain(decodeCommandGeneric(put)));
  });
});
