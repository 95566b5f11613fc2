/**
 * A member opens its client port without loading etcd's .proto files (proto-loader and
 * protobufjs cost a start-up ~100–200 ms of CPU): the hot KV calls run on hand-written codecs,
 * every other method loads the protos on its first call and is answered as before. The method
 * table the port routes by (service-methods.ts) matches the .proto files, method by method.
 *
 * This file must run in a process of its own (node --test gives each file one): it checks what
 * the process has loaded, and nothing here may load the protos before the server starts.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { etcdProtoLoaded, loadEtcdProto, SERVICE_NAMES } from '../../src/api/proto.js';
import { startApiServer } from '../../src/api/server.js';
import { lazyServiceDefinition, SERVICE_METHODS } from '../../src/api/service-methods.js';
import { TestBackend, testLogger } from './harness.js';
import { unaryCall } from './raw-grpc.js';

/** Packages whose CommonJS modules this process has loaded, among `names`. */
function loadedPackages(names: readonly string[]): string[] {
  const files = Object.keys(createRequire(import.meta.url).cache);
  return names.filter((name) => files.some((f) => f.includes(`/node_modules/${name}/`)));
}

test('the client port serves KV without loading the protos; another method loads them on its first call', {
  timeout: 60_000,
}, async () => {
  const backend = new TestBackend();
  const server = await startApiServer({
    backend,
    listen: '127.0.0.1:0',
    logger: testLogger().logger,
    protoWarmUpMs: null,
  });
  const endpoint = `127.0.0.1:${server.port}`;
  try {
    assert.equal(etcdProtoLoaded(), false, 'the protos are loaded before the port opened');
    assert.deepEqual(loadedPackages(['@grpc/proto-loader', 'protobufjs']), []);

    // Put key 'a' = 'b', then Range it: the hand-written codecs, no protos.
    const put = await unaryCall(
      endpoint,
      '/etcdserverpb.KV/Put',
      Buffer.from('0a01611201' + '62', 'hex'),
    );
    assert.equal(put.status, '0');
    const range = await unaryCall(endpoint, '/etcdserverpb.KV/Range', Buffer.from('0a0161', 'hex'));
    assert.equal(range.status, '0');
    assert.ok(range.message.includes(Buffer.from('b')), 'the Range found the value');
    assert.equal(etcdProtoLoaded(), false, 'a KV call loaded the protos');
    assert.deepEqual(loadedPackages(['@grpc/proto-loader', 'protobufjs']), []);

    // LeaseGrant TTL 60: no hand-written codec, so its first call loads the protos.
    const grant = await unaryCall(
      endpoint,
      '/etcdserverpb.Lease/LeaseGrant',
      Buffer.from('083c', 'hex'),
    );
    assert.equal(grant.status, '0');
    assert.equal(etcdProtoLoaded(), true);
    assert.deepEqual(loadedPackages(['@grpc/proto-loader', 'protobufjs']), [
      '@grpc/proto-loader',
      'protobufjs',
    ]);
    // The answer is LeaseGrantResponse { header = 1, ID = 2, TTL = 3 }: TTL 60 is field 3.
    assert.ok(grant.message.includes(Buffer.from('183c', 'hex')), grant.message.toString('hex'));
  } finally {
    await server.close();
    backend.close();
  }
});

test('the method table the port routes by is the .proto files, method by method', () => {
  const proto = loadEtcdProto();
  for (const key of Object.keys(SERVICE_METHODS) as (keyof typeof SERVICE_METHODS)[]) {
    const fromProto = proto[SERVICE_NAMES[key]] as Record<
      string,
      { path: string; requestStream: boolean; responseStream: boolean }
    >;
    const fromTable = lazyServiceDefinition(key);
    const shape = (defs: typeof fromProto) =>
      Object.entries(defs).map(([name, d]) => [name, d.path, d.requestStream, d.responseStream]);
    assert.deepEqual(shape(fromTable), shape(fromProto), SERVICE_NAMES[key]);
  }
  assert.deepEqual(
    Object.keys(SERVICE_METHODS).sort(),
    Object.keys(SERVICE_NAMES).sort(),
    'every service has its methods listed',
  );
});
