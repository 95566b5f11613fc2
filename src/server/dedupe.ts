/**
 * Request ids: a write proposed with one (gRPC metadata `tandem-request-id`) is applied at most
 * once; applying it again answers with the first application's result (the same revision, the
 * same prevKv), so a client may retry a put, delete or txn whose answer it lost.
 *
 * The table is replicated state: every member records the same ids at the same entries, in the
 * entry's backend transaction (meta bucket, so snapshots carry it and a restart reloads it), and
 * forgets them by rules that read only the log:
 *
 *   window  a record answers duplicates while fewer than `windowEntries` log entries have been
 *           applied since its own (1,000,000 by default) and while it is among the newest
 *           `recordsMax` records (65,536): at 10,000 keyed writes a second a key is remembered
 *           for about 6.5 s, so the client's default deadline (10 s) is covered below about
 *           6,500 keyed writes a second; and while the kept answers and keys take at most
 *           `bytesMax` (64 MiB: at most 4,096 answers of the largest kept size). Past the window
 *           the id is new again (applied anew).
 *   scope   an id is per user (the auth header's username; '' without auth): another user's
 *           retry never sees this user's answer.
 *   same    a duplicate must carry the same command: the id reused for another write is
 *           refused (REQUEST_ID_REUSED), never answered with an unrelated result.
 *
 * Command layout (kind 11 of tandem-state-machine.ts), after the kind byte:
 *
 *   u8 id length (1..REQUEST_ID_BYTES_MAX), the id (ASCII), then the KV command (kind 1 and its
 *   payload)
 *
 * A record in the meta bucket, `x:dedupe/<user>\0<id>`: msgpack [index, digest, answer], answer
 * a msgpack ApplyResult, or null when it was larger than `answerBytesMax` (a duplicate is then
 * refused with REQUEST_ID_ANSWER_DROPPED: it was applied, its answer is not kept).
 */
import { createHash } from 'node:crypto';
import { Packr } from 'msgpackr';
import type { Backend } from '../kv/backend/backend.js';
import { KV_ERRORS, KvError, type KvErrorCode } from '../kv/errors.js';
import type { TxnWrite } from '../kv/mvcc/store.js';
import type { ApplyResult } from '../kv/state-machine.js';
import { assert } from '../util/assert.js';
import { concatBytes, prefixEnd } from '../util/bytes.js';
import { META_DEDUPE_PREFIX } from './meta-keys.js';

/** Bytes of a request id at most; ids are printable ASCII without spaces. */
export const REQUEST_ID_BYTES_MAX = 64;
export const REQUEST_ID_PATTERN = /^[\x21-\x7e]{1,64}$/;
export const DEDUPE_RECORDS_MAX_DEFAULT = 65_536;
export const DEDUPE_WINDOW_ENTRIES_DEFAULT = 1_000_000;
/** An answer larger than this is not kept (a txn's reads); puts and deletes fit easily. */
export const DEDUPE_ANSWER_BYTES_MAX_DEFAULT = 16 * 1024;
/** Bytes of kept answers and keys in all: what the table may hold in memory and on disk. */
export const DEDUPE_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;

assert(REQUEST_ID_BYTES_MAX < 0x100, 'a request id length fits its u8');
assert(DEDUPE_RECORDS_MAX_DEFAULT <= DEDUPE_WINDOW_ENTRIES_DEFAULT, 'records fit the window');
assert(DEDUPE_ANSWER_BYTES_MAX_DEFAULT * 1024 <= DEDUPE_BYTES_MAX_DEFAULT, 'many answers fit');

export interface DedupeLimits {
  readonly recordsMax: number;
  readonly windowEntries: number;
  readonly answerBytesMax: number;
  readonly bytesMax: number;
}

export const DEDUPE_LIMITS_DEFAULT: DedupeLimits = Object.freeze({
  recordsMax: DEDUPE_RECORDS_MAX_DEFAULT,
  windowEntries: DEDUPE_WINDOW_ENTRIES_DEFAULT,
  answerBytesMax: DEDUPE_ANSWER_BYTES_MAX_DEFAULT,
  bytesMax: DEDUPE_BYTES_MAX_DEFAULT,
});

// Bigints (lease ids in prevKv) round-trip as bigints; no msgpack records (plain maps).
const packr = new Packr({ int64AsType: 'bigint', useRecords: false });
const utf8 = new TextEncoder();
const ascii = new TextDecoder('latin1');

/** True when `id` may be a request id. */
export function isRequestId(id: string): boolean {
  return REQUEST_ID_PATTERN.test(id);
}

/** The payload of a deduplicated command: `kvCommand` is a whole kind-1 command. */
export function encodeDedupedPayload(requestId: string, kvCommand: Uint8Array): Uint8Array {
  assert(isRequestId(requestId), 'a request id is 1..64 printable ASCII characters');
  const out = new Uint8Array(1 + requestId.length + kvCommand.length);
  out[0] = requestId.length;
  for (let i = 0; i < requestId.length; i++) out[1 + i] = requestId.charCodeAt(i);
  out.set(kvCommand, 1 + requestId.length);
  return out;
}

export interface DedupedCommand {
  readonly requestId: string;
  /** The inner command, its kind byte included (a view). */
  readonly command: Uint8Array;
}

/** Null when the payload is not one (a corrupt entry: the same no-op on every member). */
export function decodeDedupedPayload(payload: Uint8Array): DedupedCommand | null {
  const n = payload.length > 0 ? payload[0]! : 0;
  if (n === 0 || n > REQUEST_ID_BYTES_MAX || payload.length < 1 + n + 1) return null;
  const requestId = ascii.decode(payload.subarray(1, 1 + n));
  if (!isRequestId(requestId)) return null;
  return { requestId, command: payload.subarray(1 + n) };
}

interface DedupeRecord {
  /** The log index that applied the request. */
  readonly index: number;
  /** SHA-256 of the command (first 16 bytes, hex): a duplicate must carry the same one. */
  readonly digest: string;
  /** The packed ApplyResult, or null when it was too large to keep. */
  readonly answer: Uint8Array | null;
}

/**
 * The replicated table of applied request ids. Insertion order is log order (records are added
 * only by applied entries, in index order), so the oldest record is the first of the map.
 */
export class DedupeTable {
  private readonly records = new Map<string, DedupeRecord>();
  /** Bytes of the records' keys and answers (recordBytes), bounded by `bytesMax`. */
  private bytes = 0;
  /** Duplicates answered from the table on this member (not replicated state). */
  duplicatesAnswered = 0;

  constructor(private readonly limits: DedupeLimits = DEDUPE_LIMITS_DEFAULT) {
    assert(limits.recordsMax >= 1 && limits.windowEntries >= 1, 'dedupe limits are positive');
  }

  /** The table as the meta bucket holds it (after a restart or a snapshot's install). */
  load(backend: Backend): void {
    this.records.clear();
    this.bytes = 0;
    const loaded: [string, DedupeRecord][] = [];
    backend.scan('meta', META_DEDUPE_PREFIX, prefixEnd(META_DEDUPE_PREFIX), (key, value) => {
      const [index, digest, answer] = packr.unpack(value) as [number, string, Uint8Array | null];
      const name = new TextDecoder().decode(key.subarray(META_DEDUPE_PREFIX.length));
      loaded.push([name, { index, digest, answer }]);
      return true;
    });
    loaded.sort((a, b) => a[1].index - b[1].index);
    for (const [name, record] of loaded) {
      this.records.set(name, record);
      this.bytes += recordBytes(name, record);
    }
  }

  get size(): number {
    return this.records.size;
  }

  /** Bytes the records' keys and answers take (what `bytesMax` bounds). */
  get sizeBytes(): number {
    return this.bytes;
  }

  /** [key, index] of every record, oldest first: for tests comparing members. */
  entries(): [string, number][] {
    return [...this.records].map(([k, r]) => [k, r.index]);
  }

  /**
   * Applies `command` once: a duplicate within the window is answered from the table (and
   * `noop` records the entry's index); a new id runs `apply`, whose `record` hook must be called
   * inside the entry's write transaction with its result.
   */
  applyOnce(
    index: number,
    user: string,
    deduped: DedupedCommand,
    apply: (record: (txn: TxnWrite, result: ApplyResult) => void) => ApplyResult,
    noop: () => void,
  ): ApplyResult {
    const key = `${user}\0${deduped.requestId}`;
    const digest = createHash('sha256').update(deduped.command).digest('hex').slice(0, 32);
    const seen = this.records.get(key);
    if (seen !== undefined && index - seen.index < this.limits.windowEntries) {
      noop();
      this.duplicatesAnswered++;
      return answerOf(seen, digest);
    }
    return apply((txn, result) => this.remember(txn, index, key, digest, result));
  }

  private remember(
    txn: TxnWrite,
    index: number,
    key: string,
    digest: string,
    result: ApplyResult,
  ): void {
    if (result.kind === 'skipped') return;
    let answer: Uint8Array | null = packr.pack(
      result.kind === 'applied'
        ? ['applied', result.response]
        : ['rejected', result.error.code, result.error.message],
    );
    if (answer.length > this.limits.answerBytesMax) answer = null;
    // Re-inserted, not updated in place: the map's order stays the log's order.
    const old = this.records.get(key);
    if (old !== undefined) this.bytes -= recordBytes(key, old);
    this.records.delete(key);
    const record = { index, digest, answer };
    this.records.set(key, record);
    this.bytes += recordBytes(key, record);
    txn.putMeta(metaKey(key), packr.pack([index, digest, answer]));
    // Forget the oldest past any bound (the same on every member: only the log decides).
    for (const [oldKey, old] of this.records) {
      if (
        this.records.size <= this.limits.recordsMax &&
        this.bytes <= this.limits.bytesMax &&
        index - old.index < this.limits.windowEntries
      )
        break;
      this.bytes -= recordBytes(oldKey, old);
      this.records.delete(oldKey);
      txn.deleteMeta(metaKey(oldKey));
    }
  }
}

/** A record's weight: its key and answer (the rest is a few dozen bytes). */
function recordBytes(key: string, record: DedupeRecord): number {
  return key.length + (record.answer?.length ?? 0);
}

function metaKey(key: string): Uint8Array {
  return concatBytes(META_DEDUPE_PREFIX, utf8.encode(key));
}

function answerOf(record: DedupeRecord, digest: string): ApplyResult {
  if (record.digest !== digest) {
    return { kind: 'rejected', error: new KvError('REQUEST_ID_REUSED') };
  }
  if (record.answer === null) {
    return {
      kind: 'rejected',
      error: new KvError('REQUEST_ID_ANSWER_DROPPED', `applied at index ${record.index}`),
    };
  }
  const stored = packr.unpack(record.answer) as unknown[];
  if (stored[0] === 'applied') {
    return {
      kind: 'applied',
      response: stored[1] as Extract<ApplyResult, { kind: 'applied' }>['response'],
    };
  }
  const code = stored[1] as KvErrorCode;
  const message = stored[2] as string;
  const base = KV_ERRORS[code]?.message;
  const detail =
    base !== undefined && message.startsWith(`${base}: `)
      ? message.slice(base.length + 2)
      : undefined;
  return {
    kind: 'rejected',
    error: new KvError(base === undefined ? 'INVALID_REQUEST' : code, detail),
  };
}
