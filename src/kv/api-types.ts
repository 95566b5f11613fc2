/**
 * Request and response messages of etcd's KV service (api/etcdserverpb/rpc.proto), field for
 * field in camelCase, so the gRPC layer maps them 1:1. A `oneof` is a tagged union whose tag has
 * the name @grpc/proto-loader gives it with `oneofs: true` (`request`, `response`).
 *
 * Unlike proto3, every field is present; use the `*Request()` constructors for defaults.
 * `ResponseHeader` carries only the revision: cluster id, member id and raft term are the
 * server's to fill in.
 */
import { type KeyValue, type LeaseId, NO_LEASE } from './types.js';

export interface ResponseHeader {
  readonly revision: number;
}

export const SortOrder = { None: 0, Ascend: 1, Descend: 2 } as const;
export type SortOrder = (typeof SortOrder)[keyof typeof SortOrder];

export const SortTarget = { Key: 0, Version: 1, Create: 2, Mod: 3, Value: 4 } as const;
export type SortTarget = (typeof SortTarget)[keyof typeof SortTarget];

export interface RangeRequest {
  readonly key: Uint8Array;
  /** Empty: the single key; [0]: every key >= key; else [key, rangeEnd). */
  readonly rangeEnd: Uint8Array;
  /** Maximum number of keys returned; 0 = no limit. */
  readonly limit: number;
  /** Point-in-time read; 0 = the current revision. */
  readonly revision: number;
  readonly sortOrder: SortOrder;
  readonly sortTarget: SortTarget;
  /** Accepted and ignored here: the read path decides linearizable vs serializable. */
  readonly serializable: boolean;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
  /** Filters; 0 = no filter. */
  readonly minModRevision: number;
  readonly maxModRevision: number;
  readonly minCreateRevision: number;
  readonly maxCreateRevision: number;
}

export interface RangeResponse {
  readonly header: ResponseHeader;
  readonly kvs: readonly KeyValue[];
  /** More keys matched than `limit` allowed (after the filters). */
  readonly more: boolean;
  /** Keys in the range at the read revision, before limit and filters. */
  readonly count: number;
}

export interface PutRequest {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly lease: LeaseId;
  readonly prevKv: boolean;
  readonly ignoreValue: boolean;
  readonly ignoreLease: boolean;
}

export interface PutResponse {
  readonly header: ResponseHeader;
  readonly prevKv: KeyValue | null;
}

export interface DeleteRangeRequest {
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
  readonly prevKv: boolean;
}

export interface DeleteRangeResponse {
  readonly header: ResponseHeader;
  readonly deleted: number;
  readonly prevKvs: readonly KeyValue[];
}

export type RequestOp =
  | { readonly request: 'requestRange'; readonly requestRange: RangeRequest }
  | { readonly request: 'requestPut'; readonly requestPut: PutRequest }
  | { readonly request: 'requestDeleteRange'; readonly requestDeleteRange: DeleteRangeRequest }
  | { readonly request: 'requestTxn'; readonly requestTxn: TxnRequest };

export type ResponseOp =
  | { readonly response: 'responseRange'; readonly responseRange: RangeResponse }
  | { readonly response: 'responsePut'; readonly responsePut: PutResponse }
  | { readonly response: 'responseDeleteRange'; readonly responseDeleteRange: DeleteRangeResponse }
  | { readonly response: 'responseTxn'; readonly responseTxn: TxnResponse };

export const CompareResult = { Equal: 0, Greater: 1, Less: 2, NotEqual: 3 } as const;
export type CompareResult = (typeof CompareResult)[keyof typeof CompareResult];

export const CompareTarget = { Version: 0, Create: 1, Mod: 2, Value: 3, Lease: 4 } as const;
export type CompareTarget = (typeof CompareTarget)[keyof typeof CompareTarget];

/**
 * etcd's Compare. The proto's `target_union` oneof is flattened: the field named by `target` is
 * used and the others are ignored (an unset oneof compares as 0 / empty, as in etcd).
 */
export interface Compare {
  readonly result: CompareResult;
  readonly target: CompareTarget;
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
  readonly version: number;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly value: Uint8Array;
  readonly lease: LeaseId;
}

export interface TxnRequest {
  readonly compare: readonly Compare[];
  readonly success: readonly RequestOp[];
  readonly failure: readonly RequestOp[];
}

export interface TxnResponse {
  readonly header: ResponseHeader;
  readonly succeeded: boolean;
  readonly responses: readonly ResponseOp[];
}

export interface CompactionRequest {
  readonly revision: number;
  /** Accepted and ignored: compaction is applied synchronously, so it is always physical. */
  readonly physical: boolean;
}

export interface CompactionResponse {
  readonly header: ResponseHeader;
}

/** What the state machine applies: one KV request, as proposed through Raft. */
export type KvRequest =
  | { readonly type: 'range'; readonly request: RangeRequest }
  | { readonly type: 'put'; readonly request: PutRequest }
  | { readonly type: 'deleteRange'; readonly request: DeleteRangeRequest }
  | { readonly type: 'txn'; readonly request: TxnRequest }
  | { readonly type: 'compaction'; readonly request: CompactionRequest };

export type KvResponse =
  | { readonly type: 'range'; readonly response: RangeResponse }
  | { readonly type: 'put'; readonly response: PutResponse }
  | { readonly type: 'deleteRange'; readonly response: DeleteRangeResponse }
  | { readonly type: 'txn'; readonly response: TxnResponse }
  | { readonly type: 'compaction'; readonly response: CompactionResponse };

const EMPTY = new Uint8Array(0);

export function rangeRequest(fields: Partial<RangeRequest> & { key: Uint8Array }): RangeRequest {
  return {
    rangeEnd: EMPTY,
    limit: 0,
    revision: 0,
    sortOrder: SortOrder.None,
    sortTarget: SortTarget.Key,
    serializable: false,
    keysOnly: false,
    countOnly: false,
    minModRevision: 0,
    maxModRevision: 0,
    minCreateRevision: 0,
    maxCreateRevision: 0,
    ...fields,
  };
}

export function putRequest(fields: Partial<PutRequest> & { key: Uint8Array }): PutRequest {
  return {
    value: EMPTY,
    lease: NO_LEASE,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
    ...fields,
  };
}

export function deleteRangeRequest(
  fields: Partial<DeleteRangeRequest> & { key: Uint8Array },
): DeleteRangeRequest {
  return { rangeEnd: EMPTY, prevKv: false, ...fields };
}

export function compare(
  fields: Partial<Compare> & Pick<Compare, 'key' | 'target' | 'result'>,
): Compare {
  return {
    rangeEnd: EMPTY,
    version: 0,
    createRevision: 0,
    modRevision: 0,
    value: EMPTY,
    lease: NO_LEASE,
    ...fields,
  };
}

export function txnRequest(fields: Partial<TxnRequest>): TxnRequest {
  return { compare: [], success: [], failure: [], ...fields };
}

export function compactionRequest(revision: number, physical = false): CompactionRequest {
  return { revision, physical };
}

export const op = {
  range: (r: RangeRequest): RequestOp => ({ request: 'requestRange', requestRange: r }),
  put: (r: PutRequest): RequestOp => ({ request: 'requestPut', requestPut: r }),
  deleteRange: (r: DeleteRangeRequest): RequestOp => ({
    request: 'requestDeleteRange',
    requestDeleteRange: r,
  }),
  txn: (r: TxnRequest): RequestOp => ({ request: 'requestTxn', requestTxn: r }),
} as const;
