/**
 * The client's pure parts: etcd's messages and gRPC codes to stable error codes, prefix range
 * ends, and the package export `tandem/client` (its paths, and the module itself once built).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { clientError } from '../../src/client/errors.js';
import { prefixEnd } from '../../src/client/index.js';

test('etcd messages and gRPC codes map to stable client error codes', () => {
  const cases: [number, string, string][] = [
    [status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted', 'COMPACTED'],
    [
      status.OUT_OF_RANGE,
      'etcdserver: mvcc: required revision is a future revision',
      'FUTURE_REVISION',
    ],
    [status.NOT_FOUND, 'etcdserver: requested lease not found', 'LEASE_NOT_FOUND'],
    [status.UNAVAILABLE, 'etcdserver: no leader', 'NO_LEADER'],
    [status.UNAVAILABLE, 'etcdserver: leader changed', 'LEADER_CHANGED'],
    [status.UNAVAILABLE, 'etcdserver: request timed out', 'TIMEOUT'],
    [status.RESOURCE_EXHAUSTED, 'etcdserver: too many requests', 'TOO_MANY_REQUESTS'],
    [status.INVALID_ARGUMENT, 'etcdserver: key is not provided', 'INVALID_ARGUMENT'],
    [status.UNAVAILABLE, 'No connection established', 'UNAVAILABLE'],
    [status.DEADLINE_EXCEEDED, 'Deadline exceeded', 'TIMEOUT'],
    [status.DATA_LOSS, 'something new', 'INTERNAL'],
    [
      status.INVALID_ARGUMENT,
      'etcdserver: authentication failed, invalid user ID or password',
      'AUTH_FAILED',
    ],
    [
      status.INVALID_ARGUMENT,
      'tandem: the request id was already used for a different request',
      'REQUEST_ID_REUSED',
    ],
    [
      status.FAILED_PRECONDITION,
      'tandem: the request was applied; its answer was too large to keep for a retry',
      'REQUEST_ID_ANSWER_DROPPED',
    ],
  ];
  for (const [code, message, expected] of cases) {
    const e = clientError(code, message);
    assert.equal(e.code, expected, message);
    assert.equal(e.grpcCode, code);
    assert.equal(e.message, message);
  }
});

test('prefix range ends as etcd computes them', () => {
  assert.deepEqual(prefixEnd(Buffer.from('a/')), Buffer.from('a0'));
  assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff])), Buffer.from([0x62]));
  assert.deepEqual(prefixEnd(Buffer.from([0xff, 0xff])), Buffer.from([0]));
});

test("package.json exports 'tandem/client' from the build of src/client/index.ts", async () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    exports: Record<string, { types: string; default: string }>;
  };
  assert.deepEqual(pkg.exports['./client'], {
    types: './dist/client/index.d.ts',
    default: './dist/client/index.js',
  });
  assert.ok(existsSync(new URL('../../src/client/index.ts', import.meta.url)));
  if (!existsSync(new URL('../../dist/client/index.js', import.meta.url))) return; // not built
  const mod = (await import('tandem/client' as string)) as { Client?: unknown };
  assert.equal(typeof mod.Client, 'function');
});
