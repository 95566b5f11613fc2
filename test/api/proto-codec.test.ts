/**
 * The hand-written codecs (src/api/proto-codec.ts) against protobufjs through proto-loader, the
 * reference: requests decode to exactly what proto-loader gives, for any valid encoding and for
 * anything the hand-written decoder accepts at all; responses decode, with protobufjs, to what
 * protobufjs's own encoding decodes to.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { MESSAGE_PREFIX_BYTES } from '../../src/api/grpc/framing.js';
import { FramedResponse } from '../../src/api/grpc/handlers.js';
import { loadEtcdProto, serviceDefinition } from '../../src/api/proto.js';
import { encodeRangeResponseBody, KV_CODECS } from '../../src/api/proto-codec.js';

loadEtcdProto();

function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n >>>= 7) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return Buffer.from(out);
}

const KV = serviceDefinition('kv');
const RUNS = 300;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

// --- requests, as a client would build them -------------------------------------------------

const bytes = fc.uint8Array({ maxLength: 24 }).map((b) => Buffer.from(b));
/** int64 as clients pass them: small numbers, any int64 as a decimal string. */
const int64In = fc.oneof(
  fc.integer({ min: -1000, max: 100_000 }),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }).map(String),
);
const enumValue = fc.integer({ min: -2, max: 6 });

const putRequest = fc.record(
  {
    key: bytes,
    value: bytes,
    lease: int64In,
    prevKv: fc.boolean(),
    ignoreValue: fc.boolean(),
    ignoreLease: fc.boolean(),
  },
  { requiredKeys: [] },
);

const rangeRequest = fc.record(
  {
    key: bytes,
    rangeEnd: bytes,
    limit: int64In,
    revision: int64In,
    sortOrder: enumValue,
    sortTarget: enumValue,
    serializable: fc.boolean(),
    keysOnly: fc.boolean(),
    countOnly: fc.boolean(),
    minModRevision: int64In,
    maxModRevision: int64In,
    minCreateRevision: int64In,
    maxCreateRevision: int64In,
  },
  { requiredKeys: [] },
);

const deleteRangeRequest = fc.record(
  { key: bytes, rangeEnd: bytes, prevKv: fc.boolean() },
  { requiredKeys: [] },
);

const compare = fc
  .tuple(
    fc.record(
      { result: enumValue, target: enumValue, key: bytes, rangeEnd: bytes },
      { requiredKeys: [] },
    ),
    fc.oneof(
      fc.constant({}),
      int64In.map((version) => ({ version })),
      int64In.map((createRevision) => ({ createRevision })),
      int64In.map((modRevision) => ({ modRevision })),
      bytes.map((value) => ({ value })),
      int64In.map((lease) => ({ lease })),
    ),
  )
  .map(([base, union]) => ({ ...base, ...union }));

const { txnRequest } = fc.letrec((tie) => ({
  requestOp: fc.oneof(
    { depthSize: 'small' },
    fc.constant({}),
    rangeRequest.map((requestRange) => ({ requestRange })),
    putRequest.map((requestPut) => ({ requestPut })),
    deleteRangeRequest.map((requestDeleteRange) => ({ requestDeleteRange })),
    tie('txnRequest').map((requestTxn) => ({ requestTxn })),
  ),
  txnRequest: fc.record(
    {
      compare: fc.array(compare, { maxLength: 3 }),
      success: fc.array(tie('requestOp'), { maxLength: 3 }),
      failure: fc.array(tie('requestOp'), { maxLength: 2 }),
    },
    { requiredKeys: [] },
  ),
}));

const REQUESTS = {
  Put: putRequest,
  Range: rangeRequest,
  DeleteRange: deleteRangeRequest,
  Txn: txnRequest,
} as const;

type MethodName = keyof typeof REQUESTS;
const METHODS = Object.keys(REQUESTS) as MethodName[];

function reference(method: MethodName) {
  return KV[method]!;
}

describe('hand-written request decoders', () => {
  for (const method of METHODS) {
    test(`${method}Request: the same object as proto-loader for any valid encoding`, () => {
      const ref = reference(method);
      const ours = KV_CODECS[method]!;
      fc.assert(
        fc.property(REQUESTS[method], (request) => {
          const wire = ref.requestSerialize(request);
          assert.deepStrictEqual(ours.decodeRequest(wire), ref.requestDeserialize(wire));
        }),
        { numRuns: RUNS },
      );
    });

    test(`${method}Request: whatever it accepts of any bytes, protobufjs reads the same`, () => {
      const ref = reference(method);
      const ours = KV_CODECS[method]!;
      // Valid encodings with a byte changed or cut short, and plain random bytes.
      const mangled = fc
        .tuple(REQUESTS[method], fc.nat(), fc.nat(255), fc.boolean())
        .map(([request, at, byte, truncate]) => {
          const wire = Buffer.from(ref.requestSerialize(request));
          if (wire.length === 0) return wire;
          if (truncate) return wire.subarray(0, at % wire.length);
          wire[at % wire.length] = byte;
          return wire;
        });
      const input = fc.oneof(
        mangled,
        fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b)),
      );
      let accepted = 0;
      fc.assert(
        fc.property(input, (wire) => {
          let mine: unknown;
          try {
            mine = ours.decodeRequest(wire);
          } catch {
            return;
          }
          accepted++;
          assert.deepStrictEqual(mine, ref.requestDeserialize(wire));
        }),
        { numRuns: RUNS * 3 },
      );
      assert.ok(accepted > RUNS / 10, `only ${accepted} inputs were accepted`);
    });
  }

  test('int64 extremes and 10-byte negative enums', () => {
    const ref = reference('Range');
    const ours = KV_CODECS.Range!;
    for (const limit of [INT64_MIN, -1n, 0n, 2n ** 53n + 1n, INT64_MAX]) {
      const wire = ref.requestSerialize({ limit: limit.toString(), sortOrder: -1 });
      const got = ours.decodeRequest(wire) as { limit: string; sortOrder: number };
      assert.equal(got.limit, limit.toString());
      assert.equal(got.sortOrder, -1);
    }
  });

  test('nesting past the protobufjs limit is refused, as protobufjs refuses it', () => {
    const ref = reference('Txn');
    // TxnRequest { success: [RequestOp { request_txn: TxnRequest { ... } }] }, 60 levels deep.
    const field = (tag: number, body: Buffer) =>
      Buffer.concat([Buffer.from([tag]), varint(body.length), body]);
    let wire = Buffer.alloc(0);
    for (let i = 0; i < 60; i++) wire = field(0x12, field(0x22, wire));
    assert.ok(KV_CODECS.Txn!.decodeRequest(field(0x12, field(0x22, Buffer.alloc(0)))));
    assert.throws(() => ref.requestDeserialize(wire), /nesting/);
    assert.throws(() => KV_CODECS.Txn!.decodeRequest(wire), /nesting/);
  });
});

// --- responses, as convert.ts builds them -----------------------------------------------------

const int64Out = fc.oneof(
  fc.nat({ max: Number.MAX_SAFE_INTEGER }),
  fc.integer({ min: 0, max: 1000 }),
  fc.bigInt({ min: 0n, max: INT64_MAX }).map(String),
);
const uint64Out = fc.oneof(
  fc.nat({ max: Number.MAX_SAFE_INTEGER }),
  fc.bigInt({ min: 0n, max: UINT64_MAX }).map(String),
);
const header = fc.record({
  clusterId: uint64Out,
  memberId: uint64Out,
  revision: int64Out,
  raftTerm: uint64Out,
});
const u8 = fc.uint8Array({ maxLength: 40 });
const keyValue = fc.record({
  key: fc.uint8Array({ minLength: 1, maxLength: 24 }),
  createRevision: int64Out,
  modRevision: int64Out,
  version: int64Out,
  value: fc.oneof(
    u8,
    u8.map((b) => Buffer.from(b)),
  ),
  lease: int64Out,
});
const putResponse = fc.record({ header, prevKv: fc.option(keyValue) });
const rangeResponse = fc.record({
  header,
  kvs: fc.array(keyValue, { maxLength: 6 }),
  more: fc.boolean(),
  count: int64Out,
});
const deleteRangeResponse = fc.record({
  header,
  deleted: int64Out,
  prevKvs: fc.array(keyValue, { maxLength: 4 }),
});
const { txnResponse } = fc.letrec((tie) => ({
  responseOp: fc.oneof(
    { depthSize: 'small' },
    rangeResponse.map((responseRange) => ({ responseRange })),
    putResponse.map((responsePut) => ({ responsePut })),
    deleteRangeResponse.map((responseDeleteRange) => ({ responseDeleteRange })),
    tie('txnResponse').map((responseTxn) => ({ responseTxn })),
  ),
  txnResponse: fc.record({
    header,
    succeeded: fc.boolean(),
    responses: fc.array(tie('responseOp'), { maxLength: 3 }),
  }),
}));

const RESPONSES = {
  Put: putResponse,
  Range: rangeResponse,
  DeleteRange: deleteRangeResponse,
  Txn: txnResponse,
} as const;

describe('hand-written response encoders', () => {
  for (const method of METHODS) {
    test(`${method}Response: protobufjs decodes it as it decodes its own encoding`, () => {
      const ref = reference(method);
      const ours = KV_CODECS[method]!;
      fc.assert(
        fc.property(RESPONSES[method], (response) => {
          const framed = ours.encodeResponse(response);
          assert.equal(framed[0], 0, 'not compressed');
          assert.equal(framed.readUInt32BE(1), framed.length - MESSAGE_PREFIX_BYTES);
          const body = framed.subarray(MESSAGE_PREFIX_BYTES);
          assert.deepStrictEqual(
            ref.responseDeserialize(body),
            ref.responseDeserialize(ref.responseSerialize(response)),
          );
        }),
        { numRuns: RUNS },
      );
    });
  }

  test('RangeResponse in slices (FramedResponse): protobufjs reads the same message as whole', () => {
    const ref = reference('Range');
    fc.assert(
      fc.property(rangeResponse, fc.integer({ min: 1, max: 4 }), (response, sliceKvs) => {
        const { kvs, ...rest } = response;
        const body = [encodeRangeResponseBody(rest)];
        for (let i = 0; i < kvs.length; i += sliceKvs) {
          body.push(encodeRangeResponseBody({ kvs: kvs.slice(i, i + sliceKvs) }));
        }
        const framed = Buffer.concat(FramedResponse.of(body).pieces);
        assert.equal(framed.readUInt32BE(1), framed.length - MESSAGE_PREFIX_BYTES);
        assert.deepStrictEqual(
          ref.responseDeserialize(framed.subarray(MESSAGE_PREFIX_BYTES)),
          ref.responseDeserialize(ref.responseSerialize(response)),
        );
      }),
      { numRuns: RUNS },
    );
  });

  test('defaults are left out: an empty PutResponse is empty', () => {
    assert.equal(KV_CODECS.Put!.encodeResponse({}).length, MESSAGE_PREFIX_BYTES);
    const zeros = { header: { clusterId: 0, memberId: '0', revision: 0, raftTerm: 0 } };
    // The header is present (a message field), with nothing in it.
    assert.deepEqual([...KV_CODECS.Put!.encodeResponse(zeros)], [0, 0, 0, 0, 2, 0x0a, 0]);
  });
});
