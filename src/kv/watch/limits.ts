import { assert } from '../../util/assert.js';

/** etcd's gRPC request limit (1.5 MiB) plus its gRPC overhead allowance (512 KiB). */
export const RESPONSE_BYTES_MAX_DEFAULT = 1.5 * 1024 * 1024 + 512 * 1024;

/** Responses a stream queues before its watchers turn into victims (etcd's chanBufLen). */
export const STREAM_QUEUE_RESPONSES_MAX = 128;

/**
 * Slots of the queue only control responses (created, canceled, progress) may use, so that a
 * stream full of events can still acknowledge a create or a cancel.
 */
export const STREAM_QUEUE_CONTROL_RESERVE = 16;

/**
 * Estimated bytes of event responses a stream queues. One response is always admitted into an
 * empty queue, however large, so that a revision bigger than this still gets through.
 */
export const STREAM_QUEUE_BYTES_MAX = 32 * 1024 * 1024;

/** Watchers on one stream (etcd has no limit; an unbounded map is a memory leak by request). */
export const WATCHERS_PER_STREAM_MAX = 10_000;

/**
 * Events a victim holds while its stream is full. A live revision with more matching events is
 * not held: the watcher falls back to unsynced and reads the revision from history later.
 */
export const WATCHER_PENDING_EVENTS_MAX = 1000;

/** Events read from history per `eventsBetween` call (a single revision is never split). */
export const SYNC_BATCH_EVENTS_MAX = 1000;

/** Unsynced watchers visited per tick (etcd's maxWatchersPerSync). */
export const SYNC_WATCHERS_PER_TICK_MAX = 512;

/** Events read from history per tick, over all watchers: catching up never starves writers. */
export const SYNC_EVENTS_PER_TICK_MAX = 20_000;

/** Default interval of progress notifications for watchers with progressNotify (etcd: 10 min). */
export const PROGRESS_INTERVAL_MS_DEFAULT = 10 * 60_000;

/** The watch id of stream-wide progress responses and of failed creates (clientv3's -1). */
export const WATCH_ID_NONE = -1;

assert(
  STREAM_QUEUE_CONTROL_RESERVE > 0 && STREAM_QUEUE_CONTROL_RESERVE < STREAM_QUEUE_RESPONSES_MAX,
);
assert(SYNC_BATCH_EVENTS_MAX <= SYNC_EVENTS_PER_TICK_MAX, 'one batch fits in a tick');
assert(SYNC_BATCH_EVENTS_MAX <= WATCHER_PENDING_EVENTS_MAX);
assert(RESPONSE_BYTES_MAX_DEFAULT < STREAM_QUEUE_BYTES_MAX, 'the queue holds several responses');
