/**
 * The pass-through's routing from request bytes (src/proxy/raw-route.ts) against the decoded
 * routing it replaces (gateway.ts's routeOf on proto-loader's decode), on random requests:
 * Range, Txn (nested, mixed reads and writes), Alarm, under each consistency metadata. And
 * bytes that are not a message never throw: they go to the leader as a write.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { serviceDefinition } from '../../src/api/proto.js';
import { METADATA_KEYS } from '../../src/api/request-options.js';
import { routeOf } from '../../src/proxy/gateway.js';
import { rangeSerializable, routeOfBytes } from '../../src/proxy/raw-route.js';
import { GrpcMetadata } from '../../src/proxy/upstream.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 500);

const kv = serviceDefinition('kv');
const maintenance = serviceDefinition('maintenance');
const encode = (service: typeof kv, method: string, request: unknown): Buffer =>
  (service[method]!.requestSerialize as (r: unknown) => Buffer)(request);
const decode = (service: typeof kv, method: string, bytes: Buffer): unknown =>
  service[method]!.requestDeserialize(bytes);

const key = fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b));

const range = fc.record({
  key,
  rangeEnd: key,
  limit: fc.nat(1000),
  revision: fc.nat(1000),
  serializable: fc.boolean(),
  keysOnly: fc.boolean(),
  countOnly: fc.boolean(),
  minModRevision: fc.nat(1000),
});

type Op = Record<string, unknown>;
const { txn } = fc.letrec<{ txn: unknown; op: Op }>((tie) => ({
  txn: fc.record({
    compare: fc.array(fc.record({ key, result: fc.nat(3), target: fc.nat(4), version: fc.nat() }), {
      maxLength: 2,
    }),
    success: fc.array(tie('op'), { maxLength: 3 }),
    failure: fc.array(tie('op'), { maxLength: 3 }),
  }),
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    // Mostly ranges, so that read-only txns are common.
    { arbitrary: range.map((r) => ({ requestRange: r })), weight: 6 },
    { arbitrary: fc.record({ key, value: key }).map((p) => ({ requestPut: p })), weight: 1 },
    { arbitrary: fc.record({ key }).map((d) => ({ requestDeleteRange: d })), weight: 1 },
    { arbitrary: tie('txn').map((t) => ({ requestTxn: t })), weight: 2 },
  ) as fc.Arbitrary<Op>,
}));

const metadata = fc
  .constantFrom<[string, string][]>(
    [],
    [[METADATA_KEYS.consistency, 'serializable']],
    [[METADATA_KEYS.consistency, 'Linearizable']],
    [[METADATA_KEYS.consistency, ' bounded:200 ']],
    [[METADATA_KEYS.maxStalenessMs, '500']],
  )
  .map((pairs) => {
    const m = new GrpcMetadata();
    for (const [k, v] of pairs) m.add(k, v);
    return m;
  });

test('Range: routed from bytes as from the decoded request', () => {
  fc.assert(
    fc.property(range, metadata, (r, md) => {
      const bytes = encode(kv, 'Range', r);
      assert.equal(rangeSerializable(bytes), r.serializable);
      assert.deepEqual(
        routeOfBytes('kv', 'Range', bytes, md),
        routeOf('kv', 'Range', decode(kv, 'Range', bytes), md),
      );
    }),
    { numRuns: RUNS },
  );
});

test('Txn: routed from bytes as from the decoded request (nested, reads and writes)', () => {
  let reads = 0;
  let writes = 0;
  fc.assert(
    fc.property(txn, metadata, (t, md) => {
      const bytes = encode(kv, 'Txn', t);
      const fromBytes = routeOfBytes('kv', 'Txn', bytes, md);
      assert.deepEqual(fromBytes, routeOf('kv', 'Txn', decode(kv, 'Txn', bytes), md));
      if (fromBytes.route === 'read') reads++;
      if (!fromBytes.idempotent) writes++;
    }),
    { numRuns: RUNS },
  );
  // Both outcomes were exercised, or the comparison above proved little.
  assert.ok(reads > RUNS / 20 && writes > RUNS / 20, `reads ${reads}, writes ${writes}`);
});

test('Alarm: GET is idempotent, ACTIVATE and DEACTIVATE are not', () => {
  for (const action of [0, 1, 2]) {
    const bytes = encode(maintenance, 'Alarm', { action, memberID: '7', alarm: 1 });
    const md = new GrpcMetadata();
    assert.deepEqual(
      routeOfBytes('maintenance', 'Alarm', bytes, md),
      routeOf('maintenance', 'Alarm', decode(maintenance, 'Alarm', bytes), md),
    );
    assert.equal(routeOfBytes('maintenance', 'Alarm', bytes, md).idempotent, action === 0);
  }
});

test('other methods: by name alone, as routeOf does', () => {
  const md = new GrpcMetadata();
  const cases: [Parameters<typeof routeOf>[0], string][] = [
    ['kv', 'Put'],
    ['kv', 'DeleteRange'],
    ['kv', 'Compact'],
    ['lease', 'LeaseGrant'],
    ['lease', 'LeaseTimeToLive'],
    ['lease', 'LeaseLeases'],
    ['cluster', 'MemberList'],
    ['cluster', 'MemberAdd'],
    ['maintenance', 'Status'],
    ['maintenance', 'HashKV'],
    ['maintenance', 'Defragment'],
    ['auth', 'Authenticate'],
    ['health', 'Check'],
  ];
  for (const [service, method] of cases) {
    assert.deepEqual(
      routeOfBytes(service, method, Buffer.alloc(0), md),
      routeOf(service, method, {}, md),
      `${service}.${method}`,
    );
  }
});

test('bytes that are not a message go to the leader as a write, and never throw', () => {
  const md = new GrpcMetadata();
  // A truncated varint, a length past the end, a group wire type.
  for (const bad of [[0x38], [0x38, 0x80], [0x12, 0x05, 0x0a], [0x0b], [0x12, 0x02, 0x0a, 0x7f]]) {
    assert.deepEqual(routeOfBytes('kv', 'Txn', Buffer.from(bad), md), {
      route: 'leader',
      idempotent: false,
    });
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      for (const method of ['Range', 'Txn']) {
        const r = routeOfBytes('kv', method, bytes, md);
        assert.ok(r.route === 'leader' || r.route === 'read');
      }
    }),
    { numRuns: RUNS },
  );
});
