/**
 * etcd's services as the client port routes them, without loading the .proto files: each
 * method's path and streaming flags from the table below, its codec from proto-loader on the
 * method's first call (proto.ts loads it then, once per process). A member so opens its client
 * port without paying proto-loader's ~100–200 ms of CPU; the hot KV calls never need it (their
 * codecs are hand-written, proto-codec.ts). test/api/lazy-proto.test.ts checks the table
 * against the .proto files, method by method.
 */
import type { SerializerDefinition } from './grpc/handlers.js';
import { SERVICE_NAMES, type ServiceKey, serviceDefinition } from './proto.js';

/** How a method streams: neither way (unary), responses only, or both ways. */
export type MethodStreaming = 'unary' | 'serverStream' | 'bidi';

/** Each service's methods in the .proto's order; a bare name is unary. */
export const SERVICE_METHODS: Readonly<
  Record<ServiceKey, ReadonlyArray<string | readonly [name: string, streaming: MethodStreaming]>>
> = {
  kv: ['Range', 'Put', 'DeleteRange', 'Txn', 'Compact'],
  watch: [['Watch', 'bidi']],
  lease: [
    'LeaseGrant',
    'LeaseRevoke',
    ['LeaseKeepAlive', 'bidi'],
    'LeaseTimeToLive',
    'LeaseLeases',
  ],
  cluster: ['MemberAdd', 'MemberRemove', 'MemberUpdate', 'MemberList', 'MemberPromote'],
  maintenance: [
    'Alarm',
    'Status',
    'Defragment',
    'Hash',
    'HashKV',
    ['Snapshot', 'serverStream'],
    'MoveLeader',
    'Downgrade',
  ],
  auth: [
    'AuthEnable',
    'AuthDisable',
    'AuthStatus',
    'Authenticate',
    'UserAdd',
    'UserGet',
    'UserList',
    'UserDelete',
    'UserChangePassword',
    'UserGrantRole',
    'UserRevokeRole',
    'RoleAdd',
    'RoleGet',
    'RoleList',
    'RoleDelete',
    'RoleGrantPermission',
    'RoleRevokePermission',
  ],
  health: ['Check', ['Watch', 'serverStream']],
  lock: ['Lock', 'Unlock'],
  election: ['Campaign', 'Proclaim', 'Leader', ['Observe', 'serverStream'], 'Resign'],
};

/**
 * A service's methods for describeService (grpc/handlers.ts): paths and flags now, the
 * request decoder and response encoder from the loaded .proto on first use.
 */
export function lazyServiceDefinition(key: ServiceKey): Record<string, SerializerDefinition> {
  const described: Record<string, SerializerDefinition> = {};
  for (const method of SERVICE_METHODS[key]) {
    const [name, streaming] = typeof method === 'string' ? [method, 'unary' as const] : method;
    let loaded: SerializerDefinition | null = null;
    const definition = (): SerializerDefinition => {
      if (loaded === null) {
        const found = serviceDefinition(key)[name];
        if (found === undefined) throw new Error(`proto: ${SERVICE_NAMES[key]} has no ${name}`);
        loaded = found as SerializerDefinition;
      }
      return loaded;
    };
    described[name] = {
      path: `/${SERVICE_NAMES[key]}/${name}`,
      requestStream: streaming === 'bidi',
      responseStream: streaming !== 'unary',
      requestDeserialize: (message) => definition().requestDeserialize(message),
      responseSerialize: (response: never) => definition().responseSerialize(response),
    };
  }
  return described;
}
