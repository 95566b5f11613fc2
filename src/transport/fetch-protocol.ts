/**
 * Fetching committed entries from peers, outside Raft: protocol-aware WAL recovery (storage/wal/
 * wal.ts "open"). A member whose WAL lost entries it knows committed asks its peers for them
 * before its Raft starts, over the peer port and its handshake (cluster id, member ids, TLS):
 *
 *   recovering member                              running peer (InboundConnection)
 *     dial, HELLO [clusterId, from, to]          ─►
 *                                                ◄─ HELLO_OK [clusterId, to]
 *     FETCH_REQUEST [firstIndex, lastIndex, maxBytes] ─►
 *                                                ◄─ FETCH_RESPONSE [status, commit, first, entries]
 *     ... one request per page, then close
 *
 * A peer answers from its raft storage, and only entries at or below its commit index that it
 * has not compacted: committed entries are the same on every member (Raft's Log Matching), so
 * any peer's copy is the right one, and the requester checks each answer against the intact
 * entries around the hole before using it. Why here and not in the member loop: the requester
 * has no Raft yet (it must not start with a hole), and the answer needs nothing but storage.
 * Why not a Raft message: a MsgApp would make the peer's Raft reason about a member that is not
 * running, and its entries could be uncommitted.
 *
 * This file is the exchange itself: its messages, their wire encoding and the answering side,
 * which the transport (transport.ts, inbound.ts) serves. The requesting side, which dials, is
 * fetch.ts, above it.
 */
import { type Entry, EntryType } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { expectArray, expectUint } from './codec.js';
import { TransportError } from './errors.js';
import { FRAME_BYTES_MAX } from './limits.js';

/** Entry data in one FETCH_RESPONSE, at most (but always at least one entry). */
export const FETCH_RESPONSE_BYTES_MAX = 4 * 1024 * 1024;
assert(FETCH_RESPONSE_BYTES_MAX * 2 <= FRAME_BYTES_MAX, 'a response page fits a frame');

export const FetchStatus = {
  /** `entries` is a non-empty prefix of the requested range. */
  Ok: 0,
  /** The peer's log starts after `firstIndex` (`first` says where). */
  Compacted: 1,
  /** The peer has not committed `firstIndex` (or is not serving yet). */
  Unavailable: 2,
} as const;
export type FetchStatus = (typeof FetchStatus)[keyof typeof FetchStatus];

export interface FetchRequest {
  readonly firstIndex: number;
  /** Inclusive. */
  readonly lastIndex: number;
  readonly maxBytes: number;
}

export interface FetchResponse {
  readonly status: FetchStatus;
  readonly commitIndex: number;
  /** The peer's first index (its log before it is compacted). */
  readonly firstIndex: number;
  readonly entries: readonly Entry[];
}

/** What a peer answers from: its raft storage and commit index, read at each request. */
export interface FetchSource {
  readonly storage: {
    firstIndex(): number;
    lastIndex(): number;
    entries(lo: number, hi: number, maxBytes: number): readonly Entry[];
  };
  readonly commitIndex: number;
}

export const FETCH_NOT_SERVING: FetchResponse = Object.freeze({
  status: FetchStatus.Unavailable,
  commitIndex: 0,
  firstIndex: 0,
  entries: [],
});

/** The peer's side: committed, uncompacted entries of the request, at most maxBytes of data. */
export function answerFetch(source: FetchSource, request: FetchRequest): FetchResponse {
  const { storage, commitIndex } = source;
  const first = storage.firstIndex();
  if (request.firstIndex < first) {
    return { status: FetchStatus.Compacted, commitIndex, firstIndex: first, entries: [] };
  }
  const hi = Math.min(request.lastIndex, commitIndex, storage.lastIndex());
  if (request.firstIndex > hi) {
    return { status: FetchStatus.Unavailable, commitIndex, firstIndex: first, entries: [] };
  }
  const maxBytes = Math.min(request.maxBytes, FETCH_RESPONSE_BYTES_MAX);
  const entries = storage.entries(request.firstIndex, hi + 1, maxBytes);
  assert(entries.length > 0 && entries[0]!.index === request.firstIndex, 'a page starts at first');
  return { status: FetchStatus.Ok, commitIndex, firstIndex: first, entries };
}

// ---------------------------------------------------------------------------------------------
// Wire encoding: positional arrays (codec.ts style), every field checked on decode.

/** A fetch frame that breaks the protocol (either side). */
export function fetchMalformed(what: string): TransportError {
  return new TransportError('TRANSPORT_FRAME_MALFORMED', `malformed fetch payload: ${what}`);
}

export function encodeFetchRequest(r: FetchRequest): unknown[] {
  return [r.firstIndex, r.lastIndex, r.maxBytes];
}

export function decodeFetchRequest(v: unknown): FetchRequest {
  const t = expectArray(v, 3, 'fetch request');
  const firstIndex = expectUint(t[0], 'fetch.firstIndex');
  const lastIndex = expectUint(t[1], 'fetch.lastIndex');
  const maxBytes = expectUint(t[2], 'fetch.maxBytes');
  if (firstIndex < 1 || lastIndex < firstIndex || maxBytes < 1) throw fetchMalformed('range');
  return { firstIndex, lastIndex, maxBytes };
}

export function encodeFetchResponse(r: FetchResponse): unknown[] {
  return [
    r.status,
    r.commitIndex,
    r.firstIndex,
    r.entries.map((e) => [e.term, e.index, e.type, e.data]),
  ];
}

export function decodeFetchResponse(v: unknown): FetchResponse {
  const t = expectArray(v, 4, 'fetch response');
  const status = expectUint(t[0], 'fetch.status');
  if (status > FetchStatus.Unavailable) throw fetchMalformed('status');
  const raw = expectArray(t[3], -1, 'fetch.entries');
  const entries = raw.map((x) => {
    const e = expectArray(x, 4, 'fetch.entry');
    const type = expectUint(e[2], 'entry.type');
    if (type !== EntryType.Normal && type !== EntryType.ConfChange)
      throw fetchMalformed('entry.type');
    if (!(e[3] instanceof Uint8Array)) throw fetchMalformed('entry.data');
    return {
      term: expectUint(e[0], 'entry.term'),
      index: expectUint(e[1], 'entry.index'),
      type,
      data: e[3],
    } satisfies Entry;
  });
  if (status !== FetchStatus.Ok && entries.length > 0)
    throw fetchMalformed('entries with a refusal');
  return {
    status: status as FetchStatus,
    commitIndex: expectUint(t[1], 'fetch.commitIndex'),
    firstIndex: expectUint(t[2], 'fetch.firstIndex'),
    entries,
  };
}
