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
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { type Entry, EntryType, type NodeId } from '../raft/types.js';
import type { WalFetchRequest, WalRepairHook } from '../storage/wal/wal.js';
import { assert } from '../util/assert.js';
import { parseAddress } from './address.js';
import { expectArray, expectUint, packFrame, unpackPayload } from './codec.js';
import { TransportError } from './errors.js';
import { FrameDecoder, FrameType } from './frame.js';
import { FRAME_BYTES_MAX } from './limits.js';
import { SILENT_LOGGER, type TransportLogger } from './logger.js';
import type { TransportTlsOptions } from './transport.js';

/** Entry data in one FETCH_RESPONSE, at most (but always at least one entry). */
export const FETCH_RESPONSE_BYTES_MAX = 4 * 1024 * 1024;
/** Connect, handshake and each answer must come within this. */
export const FETCH_TIMEOUT_MS = 5_000;
/** Between rounds over every peer: doubling from the minimum, capped. */
export const FETCH_BACKOFF_MIN_MS = 200;
export const FETCH_BACKOFF_MAX_MS = 5_000;
/** Pages asked over one connection, at most (each brings at least one entry). */
export const FETCH_PAGES_MAX = 100_000;
assert(FETCH_RESPONSE_BYTES_MAX * 2 <= FRAME_BYTES_MAX, 'a response page fits a frame');
assert(FETCH_BACKOFF_MIN_MS <= FETCH_BACKOFF_MAX_MS, 'fetch backoff bounds');

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

function malformed(what: string): TransportError {
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
  if (firstIndex < 1 || lastIndex < firstIndex || maxBytes < 1) throw malformed('range');
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
  if (status > FetchStatus.Unavailable) throw malformed('status');
  const raw = expectArray(t[3], -1, 'fetch.entries');
  const entries = raw.map((x) => {
    const e = expectArray(x, 4, 'fetch.entry');
    const type = expectUint(e[2], 'entry.type');
    if (type !== EntryType.Normal && type !== EntryType.ConfChange) throw malformed('entry.type');
    if (!(e[3] instanceof Uint8Array)) throw malformed('entry.data');
    return {
      term: expectUint(e[0], 'entry.term'),
      index: expectUint(e[1], 'entry.index'),
      type,
      data: e[3],
    } satisfies Entry;
  });
  if (status !== FetchStatus.Ok && entries.length > 0) throw malformed('entries with a refusal');
  return {
    status: status as FetchStatus,
    commitIndex: expectUint(t[1], 'fetch.commitIndex'),
    firstIndex: expectUint(t[2], 'fetch.firstIndex'),
    entries,
  };
}

// ---------------------------------------------------------------------------------------------
// The requesting side

export interface FetchPeer {
  readonly id: NodeId;
  /** host:port, preferred first (redundant links). */
  readonly addresses: readonly string[];
}

export interface PeerFetchOptions {
  readonly clusterId: string;
  readonly localId: NodeId;
  /** The peers to ask, read at every round. */
  readonly peers: () => readonly FetchPeer[];
  readonly tls?: TransportTlsOptions;
  readonly logger?: TransportLogger;
  readonly timeoutMs?: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /**
   * Rounds over every peer before giving up (tests). Default: no end. A member must not start
   * with a hole in its log, so it waits (logging each round) until a peer can answer or an
   * operator stops it.
   */
  readonly roundsMax?: number;
}

/** A peer answered, and cannot serve the range (compacted, not committed, or a wrong answer). */
class FetchRefused extends Error {}

/**
 * Fetches the committed entries `range` from some peer: one peer at a time (every address of
 * it until one answers), the whole range from it, accepted once `check` finds nothing wrong.
 * Rounds over all peers repeat with backoff until one succeeds (or `roundsMax`).
 */
export async function fetchCommittedFromPeers(
  options: PeerFetchOptions,
  range: { readonly firstIndex: number; readonly lastIndex: number },
  check: (entries: readonly Entry[]) => string | null,
): Promise<Entry[]> {
  const logger = options.logger ?? SILENT_LOGGER;
  const roundsMax = options.roundsMax ?? Number.POSITIVE_INFINITY;
  const backoffMaxMs = options.backoffMaxMs ?? FETCH_BACKOFF_MAX_MS;
  let backoffMs = options.backoffMinMs ?? FETCH_BACKOFF_MIN_MS;
  const what = `committed entries ${range.firstIndex}..${range.lastIndex}`;
  for (let round = 1; ; round++) {
    const reasons: string[] = [];
    for (const peer of options.peers()) {
      for (const address of peer.addresses) {
        const who = `${peer.id.toString(16)}@${address}`;
        try {
          const entries = await fetchFromAddress(options, peer.id, address, range);
          const wrong = check(entries);
          if (wrong === null) {
            logger.info({ peer: who, ...range }, `fetched ${what} from a peer`);
            return entries;
          }
          reasons.push(`${who}: ${wrong}`);
          break;
        } catch (error) {
          reasons.push(`${who}: ${(error as Error).message}`);
          if (error instanceof FetchRefused) break; // it answered: its other links would too
        }
      }
    }
    if (round >= roundsMax) {
      throw new Error(`no peer could serve ${what} in ${round} rounds: ${reasons.join('; ')}`);
    }
    logger.warn(
      { round, retryInMs: backoffMs, reasons },
      `still fetching ${what} from peers (the member starts once it has them)`,
    );
    await new Promise((resolve) => setTimeout(resolve, backoffMs));
    backoffMs = Math.min(backoffMs * 2, backoffMaxMs);
  }
}

/** The WAL repair hook of a member: fetch from peers, with the log line operators look for. */
export function peerRepairHook(options: PeerFetchOptions): WalRepairHook {
  const logger = options.logger ?? SILENT_LOGGER;
  return {
    fetchCommitted(request: WalFetchRequest, check) {
      logger.warn(
        { file: request.damage.file, offset: request.damage.offset, commit: request.commitIndex },
        `WAL record at ${request.damage.file}:${request.damage.offset} damaged in every copy; ` +
          `fetching committed entries ${request.firstIndex}..${request.lastIndex} from peers`,
      );
      return fetchCommittedFromPeers(options, request, check);
    },
  };
}

/** One connection to one peer address: the handshake, then pages until the range is complete. */
function fetchFromAddress(
  options: PeerFetchOptions,
  peerId: NodeId,
  address: string,
  range: { readonly firstIndex: number; readonly lastIndex: number },
): Promise<Entry[]> {
  const target = parseAddress(address);
  const timeoutMs = options.timeoutMs ?? FETCH_TIMEOUT_MS;
  const socket =
    options.tls === undefined
      ? net.connect({ host: target.host, port: target.port })
      : tls.connect({
          host: target.host,
          port: target.port,
          ca: readFileSync(options.tls.caFile),
          cert: readFileSync(options.tls.certFile),
          key: readFileSync(options.tls.keyFile),
          minVersion: 'TLSv1.2',
        });
  const entries: Entry[] = [];
  let next = range.firstIndex;
  let pages = 0;
  let open = false;
  return new Promise<Entry[]>((resolve, reject) => {
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const finish = (error: Error | null): void => {
      if (done) return;
      done = true;
      if (timer !== null) clearTimeout(timer);
      decoder.stop();
      socket.destroy();
      if (error === null) resolve(entries);
      else reject(error);
    };
    const arm = (): void => {
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    };
    const ask = (): void => {
      pages++;
      if (pages > FETCH_PAGES_MAX) throw new FetchRefused(`more than ${FETCH_PAGES_MAX} pages`);
      const request = {
        firstIndex: next,
        lastIndex: range.lastIndex,
        maxBytes: FETCH_RESPONSE_BYTES_MAX,
      };
      socket.write(packFrame(FrameType.FetchRequest, encodeFetchRequest(request)));
      arm();
    };
    const onAnswer = (response: FetchResponse): void => {
      if (response.status === FetchStatus.Compacted) {
        throw new FetchRefused(`compacted: its log starts at ${response.firstIndex}`);
      }
      if (response.status === FetchStatus.Unavailable) {
        throw new FetchRefused(`has not committed ${next} (commit ${response.commitIndex})`);
      }
      const page = response.entries;
      const last = page[page.length - 1];
      if (page[0]?.index !== next || last!.index > range.lastIndex) {
        throw new FetchRefused(`answered entries outside ${next}..${range.lastIndex}`);
      }
      for (const e of page) entries.push(e);
      next = last!.index + 1;
      if (next > range.lastIndex) finish(null);
      else ask();
    };
    const decoder = new FrameDecoder(
      {
        onFrame(type: FrameType, payload: Buffer): void {
          if (!open) {
            if (type === FrameType.Refuse) {
              const reason = expectArray(unpackPayload(payload), 1, 'refuse')[0];
              throw new FetchRefused(`refused the connection: ${String(reason)}`);
            }
            if (type !== FrameType.HelloOk) throw malformed(`frame type ${type} before HELLO_OK`);
            const t = expectArray(unpackPayload(payload), 2, 'hello ok');
            if (t[0] !== options.clusterId || t[1] !== peerId) {
              throw new FetchRefused(`answered as ${String(t[1])} of cluster ${String(t[0])}`);
            }
            open = true;
            ask();
            return;
          }
          if (type !== FrameType.FetchResponse) throw malformed(`unexpected frame type ${type}`);
          onAnswer(decodeFetchResponse(unpackPayload(payload)));
        },
      },
      FRAME_BYTES_MAX,
    );
    arm();
    socket.once(options.tls === undefined ? 'connect' : 'secureConnect', () => {
      socket.write(packFrame(FrameType.Hello, [options.clusterId, options.localId, peerId]));
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (error) {
        finish(error as Error);
      }
    });
    socket.on('error', (error: Error) => finish(error));
    socket.once('close', () => finish(new Error('connection closed before the answer')));
  });
}
