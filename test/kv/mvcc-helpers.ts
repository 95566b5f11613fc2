/** Shared fixtures for the kv tests: backends, a fake lessor, request builders, printers. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Compare,
  CompareResult,
  CompareTarget,
  compactionRequest,
  compare,
  deleteRangeRequest,
  type KvRequest,
  type KvResponse,
  op,
  putRequest,
  type RangeRequest,
  type RequestOp,
  type ResponseOp,
  rangeRequest,
  txnRequest,
} from '../../src/kv/api-types.js';
import type { Backend } from '../../src/kv/backend/backend.js';
import { LmdbBackend } from '../../src/kv/backend/lmdb.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import type { ApplyResult } from '../../src/kv/state-machine.js';
import type { KeyValue, LeaseAttachments, LeaseId } from '../../src/kv/types.js';

/** Strings are byte strings here (latin1), so test keys can hold any byte, e.g. 0x00, 0xff. */
export const enc = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
export const dec = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

export class FakeLessor implements LeaseAttachments {
  readonly leases = new Map<LeaseId, Set<string>>();
  grant(id: LeaseId): void {
    this.leases.set(id, new Set());
  }
  exists(id: LeaseId): boolean {
    return this.leases.has(id);
  }
  attach(id: LeaseId, key: Uint8Array): void {
    this.leases.get(id)?.add(dec(key));
  }
  detach(id: LeaseId, key: Uint8Array): void {
    this.leases.get(id)?.delete(dec(key));
  }
  keys(id: LeaseId): string[] {
    return [...(this.leases.get(id) ?? [])].sort();
  }
}

export interface BackendKind {
  readonly name: 'memory' | 'lmdb';
  /** Opens a fresh backend; `reopen` opens the same storage again (memory: not supported). */
  create(): { backend: Backend; reopen: () => Backend; cleanup: () => Promise<void> };
}

export const BACKENDS: readonly BackendKind[] = [
  {
    name: 'memory',
    create() {
      const backend = new MemoryBackend();
      return {
        backend,
        reopen: () => {
          throw new Error('memory backend cannot be reopened');
        },
        cleanup: () => backend.close(),
      };
    },
  },
  {
    name: 'lmdb',
    create() {
      const dir = mkdtempSync(join(tmpdir(), 'tandem-kv-'));
      const opened: Backend[] = [];
      const open = (): Backend => {
        const b = new LmdbBackend({ path: dir, durable: false });
        opened.push(b);
        return b;
      };
      return {
        backend: open(),
        reopen: open,
        cleanup: async () => {
          for (const b of opened) await b.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

// ---- request builders (etcdctl-like) ----

type RangeOpts = Partial<Omit<RangeRequest, 'key' | 'rangeEnd'>> & { end?: string };

export function get(key: string, opts: RangeOpts = {}): KvRequest {
  return { type: 'range', request: rangeReq(key, opts) };
}

function rangeReq(key: string, opts: RangeOpts): RangeRequest {
  const { end, ...rest } = opts;
  return rangeRequest({ key: enc(key), rangeEnd: enc(end ?? ''), ...rest });
}

type PutOpts = { lease?: LeaseId; prevKv?: boolean; ignoreValue?: boolean; ignoreLease?: boolean };

export function put(key: string, value: string, opts: PutOpts = {}): KvRequest {
  return { type: 'put', request: putRequest({ key: enc(key), value: enc(value), ...opts }) };
}

export function del(key: string, opts: { end?: string; prevKv?: boolean } = {}): KvRequest {
  return {
    type: 'deleteRange',
    request: deleteRangeRequest({
      key: enc(key),
      rangeEnd: enc(opts.end ?? ''),
      prevKv: opts.prevKv ?? false,
    }),
  };
}

export function compact(revision: number): KvRequest {
  return { type: 'compaction', request: compactionRequest(revision) };
}

export function txn(t: {
  compare?: Compare[];
  success?: KvRequest[];
  failure?: KvRequest[];
}): KvRequest {
  return { type: 'txn', request: txnReq(t) };
}

function txnReq(t: { compare?: Compare[]; success?: KvRequest[]; failure?: KvRequest[] }) {
  return txnRequest({
    compare: t.compare ?? [],
    success: (t.success ?? []).map(toOp),
    failure: (t.failure ?? []).map(toOp),
  });
}

export function toOp(r: KvRequest): RequestOp {
  switch (r.type) {
    case 'range':
      return op.range(r.request);
    case 'put':
      return op.put(r.request);
    case 'deleteRange':
      return op.deleteRange(r.request);
    case 'txn':
      return op.txn(r.request);
    case 'compaction':
      throw new Error('no compaction in a txn');
  }
}

const RESULTS = { '=': 0, '>': 1, '<': 2, '!=': 3 } as const;
type Op = keyof typeof RESULTS;

/** cmp('value', 'foo', '=', 'bar'), cmp('version', 'foo', '>', 0), …; `end` for a range. */
export function cmp(
  target: 'value' | 'version' | 'create' | 'mod' | 'lease',
  key: string,
  result: Op,
  operand: string | number | bigint,
  end = '',
): Compare {
  const base = {
    key: enc(key),
    rangeEnd: enc(end),
    result: RESULTS[result] as CompareResult,
  };
  switch (target) {
    case 'value':
      return compare({ ...base, target: CompareTarget.Value, value: enc(String(operand)) });
    case 'version':
      return compare({ ...base, target: CompareTarget.Version, version: Number(operand) });
    case 'create':
      return compare({ ...base, target: CompareTarget.Create, createRevision: Number(operand) });
    case 'mod':
      return compare({ ...base, target: CompareTarget.Mod, modRevision: Number(operand) });
    case 'lease':
      return compare({ ...base, target: CompareTarget.Lease, lease: BigInt(operand) });
  }
}
void CompareResult;

// ---- printers: responses as small plain objects, easy to write down in tables ----

/** [key, value, create, mod, version] plus the lease when there is one. */
export type KvTuple =
  | [string, string, number, number, number]
  | [string, string, number, number, number, number];

export function kvTuple(kv: KeyValue): KvTuple {
  const t: KvTuple = [dec(kv.key), dec(kv.value), kv.createRevision, kv.modRevision, kv.version];
  return kv.lease === 0n ? t : ([...t, Number(kv.lease)] as KvTuple);
}

export type Printed = Record<string, unknown>;

export function printResult(r: ApplyResult): Printed {
  if (r.kind === 'skipped') return { skipped: true };
  if (r.kind === 'rejected') return { error: r.error.code };
  return printResponse(r.response);
}

export function printResponse(r: KvResponse): Printed {
  switch (r.type) {
    case 'range': {
      const x = r.response;
      return { rev: x.header.revision, kvs: x.kvs.map(kvTuple), count: x.count, more: x.more };
    }
    case 'put': {
      const x = r.response;
      return x.prevKv === null
        ? { rev: x.header.revision }
        : { rev: x.header.revision, prev: kvTuple(x.prevKv) };
    }
    case 'deleteRange': {
      const x = r.response;
      const out: Printed = { rev: x.header.revision, deleted: x.deleted };
      if (x.prevKvs.length > 0) out.prev = x.prevKvs.map(kvTuple);
      return out;
    }
    case 'txn': {
      const x = r.response;
      return { rev: x.header.revision, ok: x.succeeded, ops: x.responses.map(printOp) };
    }
    case 'compaction':
      return { rev: r.response.header.revision };
  }
}

function printOp(o: ResponseOp): Printed {
  switch (o.response) {
    case 'responseRange':
      return printResponse({ type: 'range', response: o.responseRange });
    case 'responsePut':
      return printResponse({ type: 'put', response: o.responsePut });
    case 'responseDeleteRange':
      return printResponse({ type: 'deleteRange', response: o.responseDeleteRange });
    case 'responseTxn':
      return printResponse({ type: 'txn', response: o.responseTxn });
  }
}
