/**
 * Limits of the gRPC edge, with etcd's defaults (server/embed/config.go, etcdserver/api/v3rpc/
 * grpc.go) so that clients tuned for etcd meet the same boundaries.
 */
import { KV_LIMITS_DEFAULT } from '../kv/validate.js';
import { assert } from '../util/assert.js';
import { KEEPALIVE_ENFORCEMENT_DEFAULT } from './grpc/keepalive.js';

/**
 * Client connections a member holds open at once (gRPC, the JSON gateway and HTTP together):
 * a bound on what a flood of idle connections can take (each costs a socket and an HTTP/2
 * session), far above what clients pooling their connections use.
 */
export const CLIENT_CONNECTIONS_MAX_DEFAULT = 16_384;

/** etcd's --max-request-bytes default (1.5 MiB); the member enforces it on each proposal. */
export const REQUEST_BYTES_MAX_DEFAULT = KV_LIMITS_DEFAULT.requestBytesMax;

/**
 * etcd's grpcOverheadBytes: the gRPC receive limit is the request limit plus this, so a request
 * just over the request limit still arrives and gets etcd's "request is too large", while a far
 * larger one is refused by gRPC itself with RESOURCE_EXHAUSTED, exactly as etcd does.
 */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;

export const RECEIVE_MESSAGE_BYTES_MAX_DEFAULT = REQUEST_BYTES_MAX_DEFAULT + GRPC_OVERHEAD_BYTES;

/** etcd's MaxSendMsgSize (math.MaxInt32): a large range answer is never cut. */
export const SEND_MESSAGE_BYTES_MAX = 2 ** 31 - 1;

/**
 * HTTP/2 streams open at once on one client connection (etcd's --max-concurrent-streams, whose
 * default is unlimited: math.MaxUint32). Every call, watch stream and keep-alive stream is one;
 * a gRPC client past it queues its next call until one ends (grpc-go, grpc-js), a client that
 * ignores the setting gets REFUSED_STREAM. Far above what a pooling client keeps open (etcd's
 * clients put all watches on one stream); a bound on what one connection can make us hold.
 */
export const CONCURRENT_STREAMS_MAX_DEFAULT = 10_000;

/** The HTTP/2 protocol's own bound on SETTINGS_MAX_CONCURRENT_STREAMS. */
export const CONCURRENT_STREAMS_MAX_LIMIT = 2 ** 32 - 1;

/**
 * etcd's --grpc-keepalive-min-time default: a client pinging more often than this is sent away
 * (GOAWAY ENHANCE_YOUR_CALM "too_many_pings"; grpc/keepalive.ts). grpc-go clients never ping
 * more often than every 10 s (they raise a lower keep-alive time to it), etcdctl included.
 */
export const KEEPALIVE_MIN_TIME_MS_DEFAULT = KEEPALIVE_ENFORCEMENT_DEFAULT.minTimeMs;

/** etcd's keep-alive policy: pings with no stream open are not expected (PermitWithoutStream). */
export const KEEPALIVE_PERMIT_WITHOUT_STREAM_DEFAULT =
  KEEPALIVE_ENFORCEMENT_DEFAULT.permitWithoutStream;

/** No client pings more often than this is needed for; the largest min-time accepted. */
export const KEEPALIVE_MIN_TIME_MS_MAX = 2 * 60 * 60 * 1000;

/** etcd's --grpc-keepalive-interval: the server pings an idle connection this often. */
export const KEEPALIVE_TIME_MS = 2 * 60 * 60 * 1000;

/** etcd's --grpc-keepalive-timeout: a ping unanswered this long closes the connection. */
export const KEEPALIVE_TIMEOUT_MS = 20 * 1000;

/**
 * etcd's snapshotSendBufferSize: bytes of snapshot per SnapshotResponse. Backend chunks larger
 * than this are sent as views of it, never copied.
 */
export const SNAPSHOT_CHUNK_BYTES_MAX = 32 * 1024;

/** etcdctl expects a snapshot of n * 512 bytes (a bbolt file) followed by its SHA-256. */
export const SNAPSHOT_ALIGN_BYTES = 512;

/** Watch requests held while a watch stream is backlogged (the call is paused meanwhile). */
export const WATCH_REQUESTS_PENDING_MAX = 64;

/** Upper bound of tandem-max-staleness-ms: a day; anything larger is surely a unit mistake. */
export const MAX_STALENESS_MS_MAX = 24 * 60 * 60 * 1000;

/** How long close() lets calls finish before cancelling them. */
export const SHUTDOWN_GRACE_MS = 2_000;

assert(RECEIVE_MESSAGE_BYTES_MAX_DEFAULT > REQUEST_BYTES_MAX_DEFAULT, 'room for gRPC overhead');
assert(RECEIVE_MESSAGE_BYTES_MAX_DEFAULT < SEND_MESSAGE_BYTES_MAX);
assert(SNAPSHOT_CHUNK_BYTES_MAX < RECEIVE_MESSAGE_BYTES_MAX_DEFAULT, 'a chunk fits a message');
assert(Number.isSafeInteger(MAX_STALENESS_MS_MAX));
assert(CONCURRENT_STREAMS_MAX_DEFAULT <= CONCURRENT_STREAMS_MAX_LIMIT);
assert(WATCH_REQUESTS_PENDING_MAX < CONCURRENT_STREAMS_MAX_DEFAULT);
assert(KEEPALIVE_MIN_TIME_MS_DEFAULT < KEEPALIVE_TIMEOUT_MS, 'a client may ping within a timeout');
assert(KEEPALIVE_MIN_TIME_MS_DEFAULT <= KEEPALIVE_MIN_TIME_MS_MAX);
