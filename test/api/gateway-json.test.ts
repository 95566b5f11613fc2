/**
 * The gateway's JSON mapping (src/api/gateway/json.ts) against proto-loader, the codec the gRPC
 * server decodes with: for random messages of every etcd request and response type, JSON out
 * and back in gives exactly proto-loader's object, whether the JSON uses etcd's original field
 * names or lowerCamelCase ones; and etcd's conventions on concrete messages.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ServiceDefinition } from '@grpc/grpc-js';
import fc from 'fast-check';
import type { Field, Type } from 'protobufjs';
import protobuf from 'protobufjs';
import { JsonMappingError, objectKeyOf, ProtoJson } from '../../src/api/gateway/json.js';
import { type ServiceKey, serviceDefinition } from '../../src/api/proto.js';

const json = new ProtoJson();
const SERVICES: ReadonlyArray<[ServiceKey, string]> = [
  ['kv', 'etcdserverpb.KV'],
  ['watch', 'etcdserverpb.Watch'],
  ['lease', 'etcdserverpb.Lease'],
  ['cluster', 'etcdserverpb.Cluster'],
  ['maintenance', 'etcdserverpb.Maintenance'],
  ['auth', 'etcdserverpb.Auth'],
];

interface Codec {
  readonly type: Type;
  serialize(value: unknown): Buffer;
  deserialize(bytes: Buffer): unknown;
}

/** Every request and response type with proto-loader's own codec for it. */
function codecs(): Codec[] {
  const out: Codec[] = [];
  for (const [key, service] of SERVICES) {
    const def = serviceDefinition(key) as ServiceDefinition;
    for (const [name, m] of Object.entries(def)) {
      const { request, response } = json.methodTypes(service, name);
      out.push({
        type: request,
        serialize: (v) => m.requestSerialize(v as never),
        deserialize: (b) => m.requestDeserialize(b),
      });
      out.push({
        type: response,
        serialize: (v) => m.responseSerialize(v as never),
        deserialize: (b) => m.responseDeserialize(b),
      });
    }
  }
  return out;
}

const CODECS = codecs();
const DEPTH_MAX = 3;

type Gen = <T>(arb: () => fc.Arbitrary<T>) => T;

/** A random value for a field, keyed as proto-loader objects are (camelCase). */
function randomScalar(g: Gen, field: Field): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Enum) {
    return g(() => fc.constantFrom(...Object.values(resolved.values)));
  }
  switch (field.type) {
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return g(() => fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })).toString();
    case 'uint64':
    case 'fixed64':
      return g(() => fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })).toString();
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return g(() => fc.integer());
    case 'uint32':
    case 'fixed32':
      return g(() => fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    case 'bool':
      return g(() => fc.boolean());
    case 'string':
      return g(() => fc.string({ maxLength: 8 }));
    case 'bytes':
      return Buffer.from(g(() => fc.uint8Array({ maxLength: 12 })));
    case 'double':
      return g(() => fc.double({ noNaN: true, noDefaultInfinity: true }));
    case 'float':
      return Math.fround(g(() => fc.float({ noNaN: true, noDefaultInfinity: true })));
  }
  throw new Error(`no generator for ${field.type}`);
}

function randomMessage(g: Gen, type: Type, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const oneofDone = new Set<string>();
  for (const field of type.fieldsArray) {
    field.resolve();
    if (!g(() => fc.boolean())) continue;
    if (field.partOf !== null) {
      if (oneofDone.has(field.partOf.name)) continue;
      oneofDone.add(field.partOf.name);
    }
    const one = (): unknown =>
      field.resolvedType instanceof protobuf.Type
        ? randomMessage(g, field.resolvedType, depth + 1)
        : randomScalar(g, field);
    if (field.resolvedType instanceof protobuf.Type && depth >= DEPTH_MAX) continue;
    out[objectKeyOf(field.name)] = field.repeated
      ? Array.from({ length: g(() => fc.integer({ min: 0, max: 3 })) }, one)
      : one();
  }
  return out;
}

/** What crosses HTTP: the text, parsed again. */
function overTheWire(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

describe('gateway JSON mapping', () => {
  test('round trip: JSON out and in is proto-loader’s own object, snake_case or camelCase', () => {
    fc.assert(
      fc.property(fc.constantFrom(...CODECS), fc.gen(), (codec, gen) => {
        const g: Gen = (arb) => gen(arb);
        const plain = randomMessage(g, codec.type, 0);
        const canonical = codec.deserialize(codec.serialize(plain));
        for (const names of ['orig', 'json'] as const) {
          const text = overTheWire(json.toJson(codec.type, canonical, names));
          assert.deepEqual(json.fromJson(codec.type, text), canonical, names);
        }
      }),
      { numRuns: 2_000, endOnFailure: true },
    );
  });

  test('a range response as etcd writes it: original names, int64 strings, base64, no defaults', () => {
    const { response } = json.methodTypes('etcdserverpb.KV', 'Range');
    const out = json.toJson(response, {
      header: { clusterId: '18446744073709551615', memberId: 7, revision: 12, raftTerm: 3 },
      kvs: [
        {
          key: Buffer.from('foo'),
          createRevision: 5,
          modRevision: 12,
          version: 2,
          value: new Uint8Array([0xff, 0]),
          lease: 0,
        },
      ],
      more: false,
      count: 1,
    });
    assert.equal(
      JSON.stringify(out),
      '{"header":{"cluster_id":"18446744073709551615","member_id":"7","revision":"12",' +
        '"raft_term":"3"},"kvs":[{"key":"Zm9v","create_revision":"5","mod_revision":"12",' +
        '"version":"2","value":"/wA="}],"count":"1"}',
    );
  });

  test('enums by name (the default one left out); a set oneof member always written', () => {
    const { response } = json.methodTypes('etcdserverpb.Watch', 'Watch');
    const out = json.toJson(response, {
      header: null,
      watchId: 0,
      events: [
        { type: 1, kv: { key: Buffer.from('a') }, prevKv: null },
        { type: 0, kv: { key: Buffer.from('b') }, prevKv: null },
      ],
    });
    assert.deepEqual(out, {
      events: [{ type: 'DELETE', kv: { key: 'YQ==' } }, { kv: { key: 'Yg==' } }],
    });
    const txn = json.methodTypes('etcdserverpb.KV', 'Txn').response;
    assert.deepEqual(json.toJson(txn, { responses: [{ responsePut: { header: null } }] }), {
      responses: [{ response_put: {} }],
    });
  });

  test('Patroni’s compare-and-swap txn, in snake_case and in camelCase, is one request', () => {
    const { request } = json.methodTypes('etcdserverpb.KV', 'Txn');
    const snake = json.fromJson(request, {
      compare: [{ target: 'MOD', mod_revision: '7', key: 'L3NlcnZpY2UvYS9sZWFkZXI=' }],
      success: [{ request_put: { key: 'L3NlcnZpY2UvYS9sZWFkZXI=', value: 'bjE=', lease: '42' } }],
    });
    const camel = json.fromJson(request, {
      compare: [{ target: 2, modRevision: 7, key: 'L3NlcnZpY2UvYS9sZWFkZXI' }],
      success: [{ requestPut: { key: 'L3NlcnZpY2UvYS9sZWFkZXI=', value: 'bjE', lease: 42 } }],
    });
    assert.deepEqual(snake, camel);
    const compare = (snake.compare as Array<Record<string, unknown>>)[0]!;
    assert.equal(compare.targetUnion, 'modRevision');
    assert.equal(compare.modRevision, '7');
    assert.equal(compare.result, 0);
    assert.deepEqual(compare.rangeEnd, Buffer.alloc(0));
    const op = (snake.success as Array<Record<string, unknown>>)[0]!;
    assert.equal(op.request, 'requestPut');
    assert.equal((op.requestPut as { lease: string }).lease, '42');
    assert.deepEqual(snake.failure, []);
  });

  test('bad input is refused by field, unknown fields are ignored, null is absent', () => {
    const { request } = json.methodTypes('etcdserverpb.KV', 'Range');
    const bad: unknown[] = [
      { key: 5 },
      { key: 'not base64!' },
      { limit: '1.5' },
      { limit: '9223372036854775808' },
      { sort_order: 'SIDEWAYS' },
      { serializable: 'yes' },
      { key: 'YQ==', Key: 'YQ==', range_end: 'Yg==', rangeEnd: 'Yg==' },
      [],
      'x',
    ];
    for (const body of bad) {
      assert.throws(() => json.fromJson(request, body), JsonMappingError, JSON.stringify(body));
    }
    const ok = json.fromJson(request, { key: 'YQ==', nonsense: 1, revision: null });
    assert.equal(ok.revision, '0');
    assert.deepEqual(ok.key, Buffer.from('a'));
    const { request: txn } = json.methodTypes('etcdserverpb.KV', 'Txn');
    assert.throws(
      () => json.fromJson(txn, { success: [{ request_put: {}, request_range: {} }] }),
      JsonMappingError,
    );
  });
});
