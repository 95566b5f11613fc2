/** The edge's pure parts: proto loading, conversion and field checks, the error table, metadata. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import {
  int64Out,
  isReadOnlyTxn,
  isSerializableTxn,
  leaseIdField,
  memberIdField,
  peerUrlsField,
  rangeFromPb,
  TXN_NESTING_MAX,
  txnFromPb,
  watchCreateFromPb,
} from '../../src/api/convert.js';
import { API_ERRORS, ApiError, toWireStatus } from '../../src/api/errors.js';
import { loadEtcdProto, type PbRangeRequest, type PbTxnRequest } from '../../src/api/proto.js';
import { REQUEST_DEFAULTS, requestOptions } from '../../src/api/request-options.js';
import { AuthError } from '../../src/kv/auth/errors.js';
import { KvError } from '../../src/kv/errors.js';
import { LeaseError, LeaseErrorCode } from '../../src/kv/lease/errors.js';
import { WatchError, WatchErrorCode } from '../../src/kv/watch/errors.js';
import { ServerError } from '../../src/server/errors.js';

type MethodDef = {
  requestSerialize(value: object): Buffer;
  requestDeserialize(bytes: Buffer): unknown;
};

function method(service: string, name: string): MethodDef {
  const def = loadEtcdProto()[service] as unknown as Record<string, MethodDef>;
  return def[name]!;
}

/** Encodes like a client and decodes like the server, so tests see exactly what handlers see. */
function roundTrip<T>(service: string, name: string, message: object): T {
  const m = method(service, name);
  return m.requestDeserialize(m.requestSerialize(message)) as T;
}

describe('proto', () => {
  test('loads every etcd service with etcd method names', () => {
    const def = loadEtcdProto();
    const methods = (name: string) => Object.keys(def[name] as object).sort();
    assert.deepEqual(methods('etcdserverpb.KV'), ['Compact', 'DeleteRange', 'Put', 'Range', 'Txn']);
    assert.deepEqual(methods('etcdserverpb.Lease'), [
      'LeaseGrant',
      'LeaseKeepAlive',
      'LeaseLeases',
      'LeaseRevoke',
      'LeaseTimeToLive',
    ]);
    assert.ok(methods('etcdserverpb.Maintenance').includes('Snapshot'));
    assert.ok(methods('etcdserverpb.Cluster').includes('MemberPromote'));
    assert.ok(methods('etcdserverpb.Auth').includes('AuthStatus'));
    assert.deepEqual(methods('grpc.health.v1.Health'), ['Check', 'Watch']);
    const kv = def['etcdserverpb.KV'] as unknown as Record<string, { path: string }>;
    assert.equal(kv.Range!.path, '/etcdserverpb.KV/Range');
  });

  test('64-bit ids round-trip exactly; keys stay views of the message', () => {
    const maxLease = ((1n << 63n) - 1n).toString();
    const pb = roundTrip<{ key: Buffer; lease: string }>('etcdserverpb.KV', 'Put', {
      key: Buffer.from('k'),
      lease: maxLease,
    });
    assert.equal(pb.lease, maxLease);
    assert.equal(leaseIdField(pb.lease, 'lease'), (1n << 63n) - 1n);
    assert.ok(pb.key instanceof Uint8Array);
    assert.equal(memberIdField('18446744073709551615', 'ID'), (1n << 64n) - 1n);
    assert.equal(int64Out(5n), 5);
    assert.equal(int64Out((1n << 64n) - 1n), '18446744073709551615');
  });
});

describe('convert', () => {
  const range = (fields: object) =>
    roundTrip<PbRangeRequest>('etcdserverpb.KV', 'Range', { key: Buffer.from('a'), ...fields });

  test('a range request converts field for field', () => {
    const req = rangeFromPb(range({ limit: 10, revision: 7, keysOnly: true, sortOrder: 2 }));
    assert.equal(req.limit, 10);
    assert.equal(req.revision, 7);
    assert.equal(req.keysOnly, true);
    assert.equal(req.sortOrder, 2);
  });

  test('negative or out-of-range 64-bit fields are INVALID_FIELD naming the field', () => {
    assert.throws(
      () => rangeFromPb(range({ revision: -1 })),
      (e: unknown) =>
        e instanceof ApiError &&
        e.code === 'INVALID_FIELD' &&
        e.message.includes('RangeRequest.revision'),
    );
    assert.throws(
      () => rangeFromPb(range({ limit: '9007199254740993' })),
      /RangeRequest\.limit is out of range/,
    );
    assert.throws(() => leaseIdField('-5', 'PutRequest.lease'), /PutRequest\.lease/);
  });

  test('unknown compare enums are refused by name; nesting is bounded', () => {
    const txn = (compare: object) =>
      roundTrip<PbTxnRequest>('etcdserverpb.KV', 'Txn', {
        compare: [{ key: Buffer.from('k'), ...compare }],
      });
    assert.throws(() => txnFromPb(txn({ result: 9 })), /TxnRequest\.compare\[0\]\.result/);
    assert.throws(() => txnFromPb(txn({ target: 7 })), /TxnRequest\.compare\[0\]\.target/);
    const ok = txnFromPb(txn({ target: 4, result: 3, lease: '12' }));
    assert.equal(ok.compare[0]!.lease, 12n);
    assert.equal(ok.compare[0]!.version, 0);

    let nested: object = { success: [{ requestRange: { key: Buffer.from('k') } }] };
    for (let i = 0; i <= TXN_NESTING_MAX + 1; i++) nested = { success: [{ requestTxn: nested }] };
    const deep = roundTrip<PbTxnRequest>('etcdserverpb.KV', 'Txn', nested);
    assert.throws(() => txnFromPb(deep), /nests txns deeper/);
  });

  test('an empty RequestOp is refused instead of reaching apply', () => {
    const pb = roundTrip<PbTxnRequest>('etcdserverpb.KV', 'Txn', { success: [{}] });
    assert.throws(() => txnFromPb(pb), /TxnRequest\.success\[0\] sets no request/);
  });

  test('read-only and serializable txns are recognised as etcd does', () => {
    const pb = roundTrip<PbTxnRequest>('etcdserverpb.KV', 'Txn', {
      success: [{ requestRange: { key: Buffer.from('a'), serializable: true } }],
      failure: [{ requestRange: { key: Buffer.from('b'), serializable: true } }],
    });
    const txn = txnFromPb(pb);
    assert.ok(isReadOnlyTxn(txn) && isSerializableTxn(txn));
    const write = txnFromPb(
      roundTrip<PbTxnRequest>('etcdserverpb.KV', 'Txn', {
        success: [{ requestPut: { key: Buffer.from('a') } }],
      }),
    );
    assert.ok(!isReadOnlyTxn(write));
  });

  test('watch create: empty key is "\\0", filters map, bad numbers reach the stream as NaN', () => {
    const req = watchCreateFromPb({
      key: Buffer.alloc(0),
      rangeEnd: Buffer.from([0]),
      startRevision: '99999999999999999999',
      progressNotify: false,
      filters: [0, 1, 7],
      prevKv: true,
      watchId: '3',
      fragment: false,
    });
    assert.deepEqual([...req.key], [0]);
    assert.ok(req.noPut && req.noDelete && req.prevKv);
    assert.ok(Number.isNaN(req.startRevision));
    assert.equal(req.watchId, 3);
  });

  test('peer URLs follow etcd types.NewURLs', () => {
    assert.deepEqual(peerUrlsField(['http://10.0.0.1:2380', 'https://[::1]:2380']), [
      'http://10.0.0.1:2380',
      'https://[::1]:2380',
    ]);
    for (const bad of [[], ['foo'], ['http://host'], ['http://h:2380/path'], ['ftp://h:1']]) {
      assert.throws(() => peerUrlsField(bad), /etcdserver: given member URLs are invalid/);
    }
  });
});

describe('error table', () => {
  test("etcd's errors go out with etcd's exact code and message, details dropped", () => {
    const cases: [unknown, number, string][] = [
      [
        new KvError('COMPACTED', 'rev 3'),
        status.OUT_OF_RANGE,
        'etcdserver: mvcc: required revision has been compacted',
      ],
      [
        new KvError('REQUEST_TOO_LARGE', '2 MiB'),
        status.INVALID_ARGUMENT,
        'etcdserver: request is too large',
      ],
      [new KvError('LEASE_NOT_FOUND'), status.NOT_FOUND, 'etcdserver: requested lease not found'],
      [
        new LeaseError(LeaseErrorCode.NotFound, 1n),
        status.NOT_FOUND,
        'etcdserver: requested lease not found',
      ],
      [
        new LeaseError(LeaseErrorCode.TtlTooLarge, 1n),
        status.OUT_OF_RANGE,
        'etcdserver: too large lease TTL',
      ],
      [
        new LeaseError(LeaseErrorCode.Exists, 1n),
        status.FAILED_PRECONDITION,
        'etcdserver: lease already exists',
      ],
      [new ServerError('NO_LEADER', 'x'), status.UNAVAILABLE, 'etcdserver: no leader'],
      [new ServerError('LEADER_CHANGED', 'x'), status.UNAVAILABLE, 'etcdserver: leader changed'],
      [new ServerError('TIMEOUT', 'x'), status.UNAVAILABLE, 'etcdserver: request timed out'],
      [new ServerError('STOPPED', 'x'), status.UNAVAILABLE, 'etcdserver: server stopped'],
      // A command over the member's limit and an overloaded member, as etcd answers them:
      // clients do not retry InvalidArgument, and back off on ResourceExhausted.
      [
        new ServerError('REQUEST_TOO_LARGE', '3 MiB'),
        status.INVALID_ARGUMENT,
        'etcdserver: request is too large',
      ],
      [
        new ServerError('TOO_MANY_REQUESTS', 'x'),
        status.RESOURCE_EXHAUSTED,
        'etcdserver: too many requests',
      ],
      [new ServerError('MEMBER_NOT_FOUND', 'x'), status.NOT_FOUND, 'etcdserver: member not found'],
      [
        new ServerError('PEER_URL_EXISTS', 'x'),
        status.FAILED_PRECONDITION,
        'etcdserver: Peer URLs already exists',
      ],
      [
        new ServerError('NOT_LEARNER', 'x'),
        status.FAILED_PRECONDITION,
        'etcdserver: can only promote a learner member',
      ],
      [
        new ServerError('LEARNER_NOT_READY', 'x'),
        status.FAILED_PRECONDITION,
        'etcdserver: can only promote a learner member which is in sync with leader',
      ],
      [new ServerError('UNHEALTHY', 'x'), status.UNAVAILABLE, 'etcdserver: unhealthy cluster'],
      [
        new AuthError('AUTH_NOT_ENABLED'),
        status.FAILED_PRECONDITION,
        'etcdserver: authentication is not enabled',
      ],
    ];
    for (const [err, code, message] of cases) {
      const wire = toWireStatus(err);
      assert.equal(wire.code, code, message);
      assert.equal(wire.details, message);
      assert.ok(wire.known);
    }
  });

  test("tandem's own errors keep their detail; every entry is well formed", () => {
    const wire = toWireStatus(
      new ApiError('INVALID_FIELD', 'RangeRequest.limit must not be negative: -1'),
    );
    assert.equal(wire.code, status.INVALID_ARGUMENT);
    assert.match(wire.details, /^tandem: invalid request field: RangeRequest\.limit/);
    const watch = toWireStatus(new WatchError(WatchErrorCode.StreamClosed));
    assert.equal(watch.code, status.UNAVAILABLE);
    for (const [code, entry] of Object.entries(API_ERRORS)) {
      assert.ok(typeof status[entry.grpc] === 'number', code);
      assert.equal(
        entry.etcd,
        !entry.message.startsWith('tandem:') && !entry.message.startsWith('mvcc:'),
        code,
      );
    }
  });

  test('anything untyped is INTERNAL without internals', () => {
    const wire = toWireStatus(new TypeError('x is undefined at secret.ts:12'));
    assert.equal(wire.code, status.INTERNAL);
    assert.equal(wire.details, 'tandem: internal error');
    assert.equal(wire.known, false);
    assert.equal(toWireStatus('a string').code, status.INTERNAL);
  });
});

describe('request options', () => {
  const md = (entries: Record<string, string>) => {
    const m = new Metadata();
    for (const [k, v] of Object.entries(entries)) m.set(k, v);
    return m;
  };
  const opts = (entries: Record<string, string>, serializable = false) =>
    requestOptions(md(entries), REQUEST_DEFAULTS, serializable);

  test('defaults, explicit levels, bounded staleness, ack', () => {
    assert.deepEqual(opts({}).consistency, { kind: 'linearizable' });
    assert.equal(opts({}).ack, 'quorum');
    assert.deepEqual(opts({}, true).consistency, { kind: 'serializable' });
    assert.deepEqual(opts({ 'tandem-consistency': 'lease' }).consistency, { kind: 'lease' });
    assert.deepEqual(opts({ 'tandem-max-staleness-ms': '250' }).consistency, {
      kind: 'bounded',
      maxStalenessMs: 250,
    });
    assert.deepEqual(opts({ 'tandem-consistency': 'bounded:40' }).consistency, {
      kind: 'bounded',
      maxStalenessMs: 40,
    });
    assert.deepEqual(opts({ 'tandem-max-staleness-ms': '5' }, true).consistency, {
      kind: 'bounded',
      maxStalenessMs: 5,
    });
    assert.equal(opts({ 'tandem-ack': 'all' }).ack, 'all');
  });

  test('bad metadata is INVALID_METADATA naming the key', () => {
    const bad: [Record<string, string>, boolean, RegExp][] = [
      [{ 'tandem-consistency': 'strong' }, false, /tandem-consistency/],
      [{ 'tandem-ack': 'one' }, false, /tandem-ack/],
      [{ 'tandem-max-staleness-ms': '-1' }, false, /tandem-max-staleness-ms/],
      [{ 'tandem-max-staleness-ms': '1e3' }, false, /tandem-max-staleness-ms/],
      [{ 'tandem-max-staleness-ms': '99999999999' }, false, /tandem-max-staleness-ms/],
      [
        { 'tandem-consistency': 'linearizable', 'tandem-max-staleness-ms': '5' },
        false,
        /applies to serializable/,
      ],
      [{ 'tandem-consistency': 'linearizable' }, true, /serializable flag/],
    ];
    for (const [entries, flag, pattern] of bad) {
      assert.throws(
        () => opts(entries, flag),
        (e: unknown) =>
          e instanceof ApiError && e.code === 'INVALID_METADATA' && pattern.test(e.message),
        JSON.stringify(entries),
      );
    }
    const twice = new Metadata();
    twice.add('tandem-ack', 'all');
    twice.add('tandem-ack', 'quorum');
    assert.throws(() => requestOptions(twice, REQUEST_DEFAULTS, false), /more than once/);
  });

  test('a request id is kept as sent; a bad one is INVALID_METADATA', () => {
    assert.equal(opts({}).requestId, undefined);
    assert.equal(opts({ 'tandem-request-id': 'Client-7:42' }).requestId, 'Client-7:42');
    for (const bad of ['', 'has space', 'x'.repeat(65)]) {
      assert.throws(
        () => opts({ 'tandem-request-id': bad }),
        (e: unknown) =>
          e instanceof ApiError &&
          e.code === 'INVALID_METADATA' &&
          /tandem-request-id/.test(e.message),
        JSON.stringify(bad),
      );
    }
  });
});
