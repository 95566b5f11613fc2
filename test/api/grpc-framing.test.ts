/**
 * The gRPC pieces of src/api/grpc/ without a network: length-prefixed messages cut at any
 * boundary, the limits and flags the decoder refuses, grpc-message percent-encoding and
 * grpc-timeout parsing, metadata read from raw headers, and the call signal against Node's.
 */
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  FramingError,
  frameMessage,
  MESSAGE_PREFIX_BYTES,
  MessageDecoder,
} from '../../src/api/grpc/framing.js';
import { RawHeaderMetadata } from '../../src/api/grpc/metadata.js';
import { CallSignal } from '../../src/api/grpc/signal.js';
import { encodeStatusMessage, parseTimeoutMs, Status } from '../../src/api/grpc/status.js';

const MESSAGE_BYTES_MAX = 4096;

/** Cuts `bytes` at the given offsets (sorted, deduplicated, in range). */
function cut(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const points = [...new Set(offsets.map((o) => o % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

function decodeAll(chunks: readonly Buffer[], max = MESSAGE_BYTES_MAX): Buffer[] {
  const out: Buffer[] = [];
  const decoder = new MessageDecoder(max, (m) => out.push(Buffer.from(m)));
  for (const chunk of chunks) decoder.push(chunk);
  assert.ok(decoder.idle, 'nothing left half-read');
  return out;
}

describe('message framing', () => {
  test('messages cut anywhere come out whole, in order (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (messages, offsets) => {
          const wire = Buffer.concat(messages.map((m) => frameMessage(m)));
          const got = decodeAll(cut(wire, offsets));
          assert.deepEqual(
            got.map((b) => [...b]),
            messages.map((m) => [...m]),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  test('every single cut point of two messages, and one byte at a time', () => {
    const wire = Buffer.concat([frameMessage(Buffer.from('hello')), frameMessage(Buffer.alloc(0))]);
    for (let at = 0; at <= wire.length; at++) {
      assert.deepEqual(
        decodeAll(cut(wire, [at])).map((b) => b.toString()),
        ['hello', ''],
        `cut at ${at}`,
      );
    }
    const bytes = [...wire].map((b) => Buffer.from([b]));
    assert.deepEqual(
      decodeAll(bytes).map((b) => b.toString()),
      ['hello', ''],
    );
  });

  test('a whole message in one chunk is a view of it, not a copy', () => {
    const chunk = frameMessage(Buffer.from('view'));
    const [message] = (() => {
      const out: Buffer[] = [];
      new MessageDecoder(100, (m) => out.push(m)).push(chunk);
      return out;
    })();
    assert.equal(message!.buffer, chunk.buffer);
    assert.equal(message!.byteOffset, chunk.byteOffset + MESSAGE_PREFIX_BYTES);
  });

  test('a length over the limit is refused from the prefix alone, with grpc-js wording', () => {
    const prefix = Buffer.from([0, 0, 0, 0x10, 0x01]); // 4097 bytes announced, none sent
    const decoder = new MessageDecoder(MESSAGE_BYTES_MAX, () => assert.fail('no message'));
    assert.throws(
      () => decoder.push(prefix),
      (e: unknown) =>
        e instanceof FramingError &&
        e.status.code === Status.RESOURCE_EXHAUSTED &&
        e.status.details === 'Received message larger than max (4097 vs 4096)',
    );
    // Exactly the limit is fine.
    assert.equal(decodeAll([frameMessage(Buffer.alloc(MESSAGE_BYTES_MAX))])[0]!.length, 4096);
  });

  test('a compressed message is UNIMPLEMENTED; a flag other than 0 or 1 is INTERNAL', () => {
    const compressed = frameMessage(Buffer.from('zz'));
    compressed[0] = 1;
    const bad = frameMessage(Buffer.from('zz'));
    bad[0] = 7;
    for (const [wire, code] of [
      [compressed, Status.UNIMPLEMENTED],
      [bad, Status.INTERNAL],
    ] as const) {
      const decoder = new MessageDecoder(100, () => assert.fail('no message'));
      // Cut inside the prefix: the flag is checked once the prefix is whole.
      decoder.push(wire.subarray(0, 2));
      assert.throws(
        () => decoder.push(wire.subarray(2)),
        (e: unknown) => e instanceof FramingError && e.status.code === code,
      );
    }
  });

  test('a stream ending inside a message is not idle', () => {
    const decoder = new MessageDecoder(100, () => {});
    decoder.push(frameMessage(Buffer.from('abc')).subarray(0, 6));
    assert.equal(decoder.idle, false);
  });
});

describe('status and timeout headers', () => {
  test('grpc-message: printable ASCII unchanged, the rest percent-encoded UTF-8', () => {
    assert.equal(encodeStatusMessage('etcdserver: key not found'), 'etcdserver: key not found');
    assert.equal(encodeStatusMessage('100% done\n'), '100%25 done%0A');
    assert.equal(encodeStatusMessage('clé ✓'), 'cl%C3%A9 %E2%9C%93');
    // Decoding (as grpc-js does with decodeURIComponent) gives the original back.
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        const encoded = encodeStatusMessage(s);
        assert.match(encoded, /^[\x20-\x7e]*$/);
        assert.equal(decodeURIComponent(encoded), s);
      }),
    );
  });

  test('grpc-timeout: 1-8 digits and a unit; fractions of a millisecond round up', () => {
    assert.equal(parseTimeoutMs('1S'), 1000);
    assert.equal(parseTimeoutMs('250m'), 250);
    assert.equal(parseTimeoutMs('2M'), 120_000);
    assert.equal(parseTimeoutMs('1H'), 3_600_000);
    assert.equal(parseTimeoutMs('1500u'), 2);
    assert.equal(parseTimeoutMs('1n'), 1);
    assert.equal(parseTimeoutMs('99999999S'), 99_999_999_000);
    for (const bad of ['', 'S', '123456789S', '10s', '10 S', '-1S', '1.5S', '10']) {
      assert.equal(parseTimeoutMs(bad), null, bad);
    }
  });
});

describe('metadata from raw headers', () => {
  const md = new RawHeaderMetadata([
    ':path',
    '/a/b',
    'content-type',
    'application/grpc',
    'grpc-timeout',
    '1S',
    'tandem-ack',
    'all',
    'tandem-ack',
    'quorum',
    'trace-bin',
    'AAE',
    'trace-bin',
    'AgM=,BA',
  ]);

  test('repeated keys stay separate values, in order', () => {
    assert.deepEqual(md.get('tandem-ack'), ['all', 'quorum']);
    assert.deepEqual(md.get('Tandem-Ack'), ['all', 'quorum']);
    assert.deepEqual(md.get('absent'), []);
  });

  test('-bin values are base64, padded or not, possibly joined with commas', () => {
    assert.deepEqual(
      md.get('trace-bin').map((b) => [...(b as Buffer)]),
      [[0, 1], [2, 3], [4]],
    );
  });

  test('pseudo-headers and gRPC protocol headers are not metadata', () => {
    for (const key of [':path', 'content-type', 'grpc-timeout', 'te']) {
      assert.deepEqual(md.get(key), [], key);
    }
  });
});

describe('call signal', () => {
  type Op =
    | { readonly kind: 'add'; readonly id: number; readonly once: boolean }
    | { readonly kind: 'remove'; readonly id: number }
    | { readonly kind: 'abort' };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), id: fc.nat(3), once: fc.boolean() }),
    fc.record({ kind: fc.constant('remove' as const), id: fc.nat(3) }),
    fc.constant({ kind: 'abort' as const }),
  );

  /** Runs `ops` on a signal and returns what its listeners saw, in order. */
  function trace(signal: AbortSignal, abort: () => void, ops: readonly Op[]): string[] {
    const seen: string[] = [];
    const listeners = [0, 1, 2, 3].map((id) => () => seen.push(`l${id}:${signal.aborted}`));
    signal.onabort = () => seen.push('onabort');
    for (const o of ops) {
      if (o.kind === 'add') signal.addEventListener('abort', listeners[o.id]!, { once: o.once });
      else if (o.kind === 'remove') signal.removeEventListener('abort', listeners[o.id]!);
      else abort();
    }
    seen.push(`aborted:${signal.aborted}`);
    return seen;
  }

  test('listeners run as on a real AbortSignal, for any sequence (property)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
        const controller = new AbortController();
        const ours = new CallSignal();
        assert.deepEqual(
          trace(ours, () => ours.abort(), ops),
          trace(controller.signal, () => controller.abort(), ops),
        );
      }),
    );
  });

  test('the reason is an AbortError; throwIfAborted throws it; Node APIs accept the signal', async () => {
    const signal = new CallSignal();
    signal.throwIfAborted();
    assert.ok('aborted' in signal);
    const waiting = once(new EventEmitter(), 'never', { signal });
    signal.abort();
    assert.equal((signal.reason as Error).name, 'AbortError');
    assert.throws(() => signal.throwIfAborted(), { name: 'AbortError' });
    await assert.rejects(waiting, { name: 'AbortError' });
  });
});
