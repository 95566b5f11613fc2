/**
 * The requesting side of fetching committed entries from peers (the exchange, and why it exists,
 * are in fetch-protocol.ts): a member recovering its WAL dials its peers, one page per request,
 * before its Raft starts. It uses only the exchange and the peer TLS settings, never the running
 * transport (a recovering member has none yet).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Entry, NodeId } from '../raft/types.js';
import type { WalFetchRequest, WalRepairHook } from '../storage/wal/wal.js';
import { assert } from '../util/assert.js';
import { parseAddress } from './address.js';
import { packFrame, unpackPayload } from './codec.js';
import {
  decodeFetchResponse,
  encodeFetchRequest,
  FETCH_RESPONSE_BYTES_MAX,
  type FetchResponse,
  FetchStatus,
  fetchMalformed,
} from './fetch-protocol.js';
import { FrameDecoder, FrameType } from './frame.js';
import { type ClusterSecret, DialerHandshake } from './handshake.js';
import { FRAME_BYTES_MAX, HANDSHAKE_FRAME_BYTES_MAX } from './limits.js';
import { SILENT_LOGGER, type TransportLogger } from './logger.js';
import type { TransportTlsOptions } from './tls.js';

/** Connect, handshake and each answer must come within this. */
export const FETCH_TIMEOUT_MS = 5_000;
/** Between rounds over every peer: doubling from the minimum, capped. */
export const FETCH_BACKOFF_MIN_MS = 200;
export const FETCH_BACKOFF_MAX_MS = 5_000;
/** Pages asked over one connection, at most (each brings at least one entry). */
export const FETCH_PAGES_MAX = 100_000;
assert(FETCH_BACKOFF_MIN_MS <= FETCH_BACKOFF_MAX_MS, 'fetch backoff bounds');

export interface FetchPeer {
  readonly id: NodeId;
  /** host:port, preferred first (redundant links). */
  readonly addresses: readonly string[];
}

export interface PeerFetchOptions {
  readonly clusterId: string;
  readonly localId: NodeId;
  /** The cluster secret: a peer that cannot prove it holds it is not asked. */
  readonly secret: ClusterSecret;
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
  const handshake = new DialerHandshake(options.secret, options.clusterId, options.localId, peerId);
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
          if (!handshake.established) {
            let reply: Buffer | null;
            try {
              reply = handshake.onFrame(type, payload);
            } catch (error) {
              // It answered (refused, or not the member or cluster we asked): not worth retrying.
              throw new FetchRefused((error as Error).message);
            }
            if (reply !== null) socket.write(reply);
            if (handshake.established) {
              decoder.frameBytesMax = FRAME_BYTES_MAX;
              ask();
            }
            return;
          }
          if (type !== FrameType.FetchResponse)
            throw fetchMalformed(`unexpected frame type ${type}`);
          onAnswer(decodeFetchResponse(unpackPayload(payload)));
        },
      },
      // Big answers only once the peer proved it holds the secret.
      HANDSHAKE_FRAME_BYTES_MAX,
    );
    arm();
    socket.once(options.tls === undefined ? 'connect' : 'secureConnect', () => {
      socket.write(handshake.hello());
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
