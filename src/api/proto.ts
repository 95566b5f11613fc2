/**
 * etcd's protobuf definitions (proto/*.proto), loaded with @grpc/proto-loader, and the shapes of
 * the objects it hands us and takes back.
 *
 * Loader options, and why:
 * - `longs: String`: int64/uint64 arrive as decimal strings, so lease ids (any int64) and member
 *   ids (uint64) round-trip exactly; convert.ts turns revisions into numbers after a range check.
 *   Outgoing, protobufjs accepts a number or a decimal string for a 64-bit field.
 * - `bytes` left at Buffer: decoded bytes fields are views into the received message, not copies.
 * - `enums: Number`: proto3 enums are open; an unknown value stays visible as a number, so the
 *   edge can refuse it by name instead of it silently becoming a default.
 * - `defaults: true`, `oneofs: true`: every scalar is present, and a oneof names its set member
 *   (`request: 'requestPut'`), which is what kv/api-types.ts expects.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';

export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

export const PROTO_LOADER_OPTIONS = Object.freeze({
  longs: String,
  enums: Number,
  defaults: true,
  oneofs: true,
  keepCase: false,
  includeDirs: [PROTO_DIR],
});

/** The files loadEtcdProto loads (the JSON gateway reads the same). */
export const PROTO_FILES: readonly string[] = [
  'rpc.proto',
  'health.proto',
  'v3lock.proto',
  'v3election.proto',
];

let cached: PackageDefinition | null = null;

/**
 * etcd's rpc.proto (with kv.proto, auth.proto), v3lock and v3election, and gRPC health. Loaded
 * on first use, proto-loader with it (a CommonJS package, required synchronously): importing
 * and building the definitions costs a member ~100–200 ms of CPU that its start-up does not pay
 * (the hot KV calls have their own codecs; server.ts describes services from service-methods.ts).
 */
export function loadEtcdProto(): PackageDefinition {
  if (cached === null) {
    const loader = createRequire(import.meta.url)(
      '@grpc/proto-loader',
    ) as typeof import('@grpc/proto-loader');
    cached = loader.loadSync([...PROTO_FILES], PROTO_LOADER_OPTIONS);
  }
  return cached;
}

/** Whether loadEtcdProto has run in this process (start-up tests check it has not). */
export function etcdProtoLoaded(): boolean {
  return cached !== null;
}

export const SERVICE_NAMES = {
  kv: 'etcdserverpb.KV',
  watch: 'etcdserverpb.Watch',
  lease: 'etcdserverpb.Lease',
  cluster: 'etcdserverpb.Cluster',
  maintenance: 'etcdserverpb.Maintenance',
  auth: 'etcdserverpb.Auth',
  health: 'grpc.health.v1.Health',
  lock: 'v3lockpb.Lock',
  election: 'v3electionpb.Election',
} as const;
export type ServiceKey = keyof typeof SERVICE_NAMES;

export function serviceDefinition(key: ServiceKey): ServiceDefinition {
  const def = loadEtcdProto()[SERVICE_NAMES[key]];
  if (def === undefined || 'format' in def || 'type' in def) {
    throw new Error(`proto: ${SERVICE_NAMES[key]} is not a service`);
  }
  return def as unknown as ServiceDefinition;
}

// ---------------------------------------------------------------------------------------------
// Incoming messages, as the loader decodes them (int64 → decimal string, bytes → Buffer).

/** A decoded int64/uint64. */
export type PbInt64 = string;
/** An int64/uint64 to encode: a number when it is a safe integer, else a decimal string. */
export type PbInt64Out = number | string;

export interface PbRangeRequest {
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
  readonly limit: PbInt64;
  readonly revision: PbInt64;
  readonly sortOrder: number;
  readonly sortTarget: number;
  readonly serializable: boolean;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
  readonly minModRevision: PbInt64;
  readonly maxModRevision: PbInt64;
  readonly minCreateRevision: PbInt64;
  readonly maxCreateRevision: PbInt64;
}

export interface PbPutRequest {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly lease: PbInt64;
  readonly prevKv: boolean;
  readonly ignoreValue: boolean;
  readonly ignoreLease: boolean;
}

export interface PbDeleteRangeRequest {
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
  readonly prevKv: boolean;
}

export interface PbRequestOp {
  readonly request?: 'requestRange' | 'requestPut' | 'requestDeleteRange' | 'requestTxn';
  readonly requestRange?: PbRangeRequest;
  readonly requestPut?: PbPutRequest;
  readonly requestDeleteRange?: PbDeleteRangeRequest;
  readonly requestTxn?: PbTxnRequest;
}

export interface PbCompare {
  readonly result: number;
  readonly target: number;
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
  readonly targetUnion?: 'version' | 'createRevision' | 'modRevision' | 'value' | 'lease';
  readonly version?: PbInt64;
  readonly createRevision?: PbInt64;
  readonly modRevision?: PbInt64;
  readonly value?: Buffer;
  readonly lease?: PbInt64;
}

export interface PbTxnRequest {
  readonly compare: readonly PbCompare[];
  readonly success: readonly PbRequestOp[];
  readonly failure: readonly PbRequestOp[];
}

export interface PbCompactionRequest {
  readonly revision: PbInt64;
  readonly physical: boolean;
}

export interface PbWatchCreateRequest {
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
  readonly startRevision: PbInt64;
  readonly progressNotify: boolean;
  readonly filters: readonly number[];
  readonly prevKv: boolean;
  readonly watchId: PbInt64;
  readonly fragment: boolean;
}

export interface PbWatchRequest {
  readonly requestUnion?: 'createRequest' | 'cancelRequest' | 'progressRequest';
  readonly createRequest?: PbWatchCreateRequest;
  readonly cancelRequest?: { readonly watchId: PbInt64 };
  readonly progressRequest?: Record<string, never>;
}

export interface PbLeaseGrantRequest {
  readonly TTL: PbInt64;
  readonly ID: PbInt64;
}

export interface PbLeaseIdRequest {
  readonly ID: PbInt64;
}

export interface PbLeaseTimeToLiveRequest {
  readonly ID: PbInt64;
  readonly keys: boolean;
}

export interface PbMemberAddRequest {
  readonly peerURLs: readonly string[];
  readonly isLearner: boolean;
}

export interface PbMemberIdRequest {
  readonly ID: PbInt64;
}

export interface PbMemberUpdateRequest {
  readonly ID: PbInt64;
  readonly peerURLs: readonly string[];
}

export interface PbMemberListRequest {
  readonly linearizable: boolean;
}

export interface PbAlarmRequest {
  readonly action: number;
  readonly memberID: PbInt64;
  readonly alarm: number;
}

export interface PbHashKvRequest {
  readonly revision: PbInt64;
}

export interface PbMoveLeaderRequest {
  readonly targetID: PbInt64;
}

export interface PbHealthCheckRequest {
  readonly service: string;
}

// ---------------------------------------------------------------------------------------------
// Outgoing messages (unset fields take their proto3 defaults).

export interface PbResponseHeader {
  readonly clusterId: PbInt64Out;
  readonly memberId: PbInt64Out;
  readonly revision: PbInt64Out;
  readonly raftTerm: PbInt64Out;
}

export interface PbKeyValue {
  readonly key: Uint8Array;
  readonly createRevision: PbInt64Out;
  readonly modRevision: PbInt64Out;
  readonly version: PbInt64Out;
  readonly value: Uint8Array;
  readonly lease: PbInt64Out;
}

export interface PbEvent {
  readonly type: number;
  readonly kv: PbKeyValue;
  readonly prevKv: PbKeyValue | null;
}

export interface PbMember {
  readonly ID: PbInt64Out;
  readonly name: string;
  readonly peerURLs: readonly string[];
  readonly clientURLs: readonly string[];
  readonly isLearner: boolean;
}

/** Any response: a header plus fields of the message's own. */
export interface PbResponse {
  readonly header: PbResponseHeader;
  readonly [field: string]: unknown;
}

/** Numbers of the proto enums the edge checks (rpc.proto). */
export const PB_ENUMS = {
  compareResultMax: 3,
  compareTargetMax: 4,
  watchFilterNoPut: 0,
  watchFilterNoDelete: 1,
  alarmActionGet: 0,
  alarmActionActivate: 1,
  alarmActionDeactivate: 2,
  healthServing: 1,
  healthNotServing: 2,
} as const;
