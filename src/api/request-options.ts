/**
 * Per-request options from gRPC metadata (tandem's additions to the etcd API; etcd clients that
 * send none get the configured defaults):
 *
 *   tandem-consistency: linearizable | lease | serializable | bounded:<ms>
 *   tandem-max-staleness-ms: <ms>        a serializable read at most this stale (bounded)
 *   tandem-ack: quorum | all             when a write is acknowledged
 *   tandem-request-id: <id>              a put, delete or txn applied at most once per id (1 to
 *                                        64 printable ASCII characters; server/dedupe.ts)
 *
 * etcd's own RangeRequest.serializable flag (etcdctl --consistency=s) asks for a serializable
 * read; metadata may bound it, but not contradict it. A value that does not parse is an
 * INVALID_METADATA error naming the key, never silently the default.
 */
import type { ReadConsistency, RequestOptions, WriteAck } from '../server/contract.js';
import { isRequestId } from '../server/dedupe.js';
import { ApiError } from './errors.js';
import type { Metadata } from './grpc/metadata.js';
import { MAX_STALENESS_MS_MAX } from './limits.js';

export const METADATA_KEYS = {
  consistency: 'tandem-consistency',
  maxStalenessMs: 'tandem-max-staleness-ms',
  ack: 'tandem-ack',
  requestId: 'tandem-request-id',
} as const;

export interface RequestDefaults {
  readonly consistency: ReadConsistency;
  readonly ack: WriteAck;
}

/** etcd's defaults: linearizable reads; a write is acknowledged once committed by a quorum. */
export const REQUEST_DEFAULTS: RequestDefaults = Object.freeze({
  consistency: Object.freeze({ kind: 'linearizable' }),
  ack: 'quorum',
});

/** clientv3's WithRequireLeader (etcd's rpctypes.MetadataRequireLeaderKey / HasLeader). */
export const REQUIRE_LEADER_KEY = 'hasleader';
const REQUIRE_LEADER_VALUE = 'true';

/**
 * True when the call asks to be refused without a leader (`hasleader: true`); as etcd, only the
 * first value counts and any other value asks nothing.
 */
export function requiresLeader(metadata: Metadata): boolean {
  const values = metadata.get(REQUIRE_LEADER_KEY);
  return values.length > 0 && values[0] === REQUIRE_LEADER_VALUE;
}

const LINEARIZABLE: ReadConsistency = Object.freeze({ kind: 'linearizable' });
const LEASE: ReadConsistency = Object.freeze({ kind: 'lease' });
const SERIALIZABLE: ReadConsistency = Object.freeze({ kind: 'serializable' });

function bad(key: string, why: string): ApiError {
  return new ApiError('INVALID_METADATA', `${key} ${why}`);
}

/** The single value of a metadata key, or null; binary or repeated values are refused. */
function single(metadata: Metadata, key: string): string | null {
  const values = metadata.get(key);
  if (values.length === 0) return null;
  if (values.length > 1) throw bad(key, 'is given more than once');
  const value = values[0];
  if (typeof value !== 'string') throw bad(key, 'must be text');
  return value.trim().toLowerCase();
}

function stalenessMs(key: string, text: string): number {
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms > MAX_STALENESS_MS_MAX) {
    throw bad(key, `must be a whole number of milliseconds in [0, ${MAX_STALENESS_MS_MAX}]`);
  }
  return ms;
}

function parseConsistency(text: string): ReadConsistency {
  const key = METADATA_KEYS.consistency;
  switch (text) {
    case 'linearizable':
      return LINEARIZABLE;
    case 'lease':
      return LEASE;
    case 'serializable':
      return SERIALIZABLE;
    default:
      if (text.startsWith('bounded:')) {
        return { kind: 'bounded', maxStalenessMs: stalenessMs(key, text.slice('bounded:'.length)) };
      }
      throw bad(key, `must be linearizable, lease, serializable or bounded:<ms>, not "${text}"`);
  }
}

function parseAck(text: string | null, fallback: WriteAck): WriteAck {
  if (text === null) return fallback;
  if (text === 'quorum' || text === 'all') return text;
  throw bad(METADATA_KEYS.ack, `must be quorum or all, not "${text}"`);
}

/** The request id, kept as sent (ids are case-sensitive), or undefined. */
function requestIdOf(metadata: Metadata): string | undefined {
  const key = METADATA_KEYS.requestId;
  const values = metadata.get(key);
  if (values.length === 0) return undefined;
  if (values.length > 1) throw bad(key, 'is given more than once');
  const value = values[0];
  if (typeof value !== 'string' || !isRequestId(value)) {
    throw bad(key, 'must be 1 to 64 printable ASCII characters without spaces');
  }
  return value;
}

/**
 * The options of one request. `serializableFlag` is etcd's RangeRequest.serializable (or a txn
 * whose ranges all set it).
 */
export function requestOptions(
  metadata: Metadata,
  defaults: RequestDefaults,
  serializableFlag: boolean,
  signal?: AbortSignal,
): RequestOptions {
  const consistencyText = single(metadata, METADATA_KEYS.consistency);
  const stalenessText = single(metadata, METADATA_KEYS.maxStalenessMs);
  let consistency =
    consistencyText === null
      ? serializableFlag
        ? SERIALIZABLE
        : null
      : parseConsistency(consistencyText);

  if (serializableFlag && consistency !== null) {
    if (consistency.kind === 'linearizable' || consistency.kind === 'lease') {
      throw bad(
        METADATA_KEYS.consistency,
        `is ${consistency.kind}, but the request sets etcd's serializable flag`,
      );
    }
  }
  if (stalenessText !== null) {
    const maxStalenessMs = stalenessMs(METADATA_KEYS.maxStalenessMs, stalenessText);
    if (consistency !== null && consistency.kind !== 'serializable') {
      throw bad(
        METADATA_KEYS.maxStalenessMs,
        `applies to serializable reads, not ${consistency.kind}`,
      );
    }
    consistency = { kind: 'bounded', maxStalenessMs };
  }
  const ack = parseAck(single(metadata, METADATA_KEYS.ack), defaults.ack);
  const requestId = requestIdOf(metadata);
  return {
    consistency: consistency ?? defaults.consistency,
    ack,
    ...(signal === undefined ? {} : { signal }),
    ...(requestId === undefined ? {} : { requestId }),
  };
}
