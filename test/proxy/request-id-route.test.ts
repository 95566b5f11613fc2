/**
 * The gateway and request ids: a write carrying `tandem-request-id` is idempotent (the cluster
 * applies it once per id), so the dispatcher may send it again after its member failed; the id
 * is forwarded to the member with the call.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/api/proto.js';
import { FORWARDED_METADATA_KEYS, routeOf } from '../../src/proxy/gateway.js';
import { routeOfBytes } from '../../src/proxy/raw-route.js';

function md(entries: Record<string, string>): Metadata {
  const m = new Metadata();
  for (const [k, v] of Object.entries(entries)) m.add(k, v);
  return m;
}

test('a write with a request id is idempotent; without one it is not', () => {
  const id = { 'tandem-request-id': 'r-1' };
  const writingTxn = { success: [{ requestPut: {} }], failure: [] };
  assert.deepEqual(routeOf('kv', 'Put', {}, md({})), { route: 'leader', idempotent: false });
  assert.deepEqual(routeOf('kv', 'Put', {}, md(id)), { route: 'leader', idempotent: true });
  assert.equal(routeOf('kv', 'DeleteRange', {}, md({})).idempotent, false);
  assert.equal(routeOf('kv', 'DeleteRange', {}, md(id)).idempotent, true);
  assert.deepEqual(routeOf('kv', 'Txn', writingTxn, md({})), {
    route: 'leader',
    idempotent: false,
  });
  assert.deepEqual(routeOf('kv', 'Txn', writingTxn, md(id)), { route: 'leader', idempotent: true });
  assert.equal(routeOf('kv', 'Compact', {}, md(id)).idempotent, false, 'only kv writes');
  assert.equal(routeOf('lease', 'LeaseGrant', {}, md(id)).idempotent, false);
});

test('the request id is forwarded to members', () => {
  assert.ok((FORWARDED_METADATA_KEYS as readonly string[]).includes('tandem-request-id'));
});

test('the pass-through routes keyed writes from their bytes as the decoded path does', () => {
  const kv = serviceDefinition('kv');
  const bytesOf = (method: string, request: unknown): Buffer =>
    (kv[method]!.requestSerialize as (r: unknown) => Buffer)(request);
  const writes: [string, unknown][] = [
    ['Put', { key: Buffer.from('k'), value: Buffer.from('v') }],
    ['DeleteRange', { key: Buffer.from('k') }],
    ['Txn', { success: [{ requestPut: { key: Buffer.from('k') } }], failure: [] }],
  ];
  for (const [method, request] of writes) {
    for (const headers of [{}, { 'tandem-request-id': 'r-1' }] as Record<string, string>[]) {
      const fromBytes = routeOfBytes('kv', method, bytesOf(method, request), md(headers));
      assert.deepEqual(fromBytes, routeOf('kv', method, request, md(headers)), method);
      assert.equal(fromBytes.idempotent, 'tandem-request-id' in headers, method);
    }
  }
});
