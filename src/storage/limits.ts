/**
 * Every limit of durable storage, named, with units, and their relations asserted at load
 * (TigerBeetle style). Options may lower the segment size (tests do), never raise a maximum.
 */
import { assert } from '../util/assert.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Records start at multiples of this, so a record's header words never straddle a sector. */
export const RECORD_ALIGN_BYTES = 8;
/** Frame header: u32 crc, u32 payload length, u8 type, u8 flags, u16 + u32 reserved (zero). */
export const RECORD_HEADER_BYTES = 16;
/** The largest record payload written or accepted on read (one entry: about 16 MiB). */
export const RECORD_PAYLOAD_BYTES_MAX = 16 * MiB;
/** The largest framed record: header + payload + alignment padding. */
export const RECORD_FRAME_BYTES_MAX = RECORD_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX;

/** Bytes of one `save()` (one Ready): one write and one fdatasync. */
export const BATCH_BYTES_MAX = 128 * MiB;
/** The group-commit buffer starts this big and doubles up to BATCH_BYTES_MAX (then is reused). */
export const BATCH_BUFFER_BYTES_INITIAL = 1 * MiB;

export const SEGMENT_BYTES_DEFAULT = 64 * MiB;
/** Tests use tiny segments to exercise rotation; below this the header batch would not fit. */
export const SEGMENT_BYTES_MIN = 1 * KiB;
/** The largest `segmentBytes` option accepted. */
export const SEGMENT_BYTES_OPTION_MAX = 1024 * MiB;
/**
 * A segment grows past its nominal size only to hold one batch that starts it, so no segment
 * file is larger than this; recovery reads a whole segment into one buffer.
 */
export const SEGMENT_BYTES_MAX = SEGMENT_BYTES_OPTION_MAX + BATCH_BYTES_MAX;
/** A WAL holding more segments than this is a release bug (or a misconfigured snapshot interval). */
export const SEGMENTS_MAX = 100_000;
/** Zero-filled preallocation is written in chunks of this size (bounded memory). */
export const PREALLOCATE_CHUNK_BYTES = 1 * MiB;

/**
 * Protocol-aware recovery (wal.ts "open"): spans damaged in every copy that recovery steps over
 * in one WAL, at most; more is not bit rot but a lost device, and recovery refuses.
 */
export const DAMAGED_SPANS_MAX = 64;
/** Entries a WAL may lack after stepping over damage (fetched from peers), at most. */
export const MISSING_ENTRIES_MAX = 1_000_000;
/** When recovery rewrites the log into a fresh segment, entries go in batches of about this. */
export const REWRITE_BATCH_BYTES = 1 * MiB;

/** A snapshot file is read whole into memory: bounded. */
export const SNAPSHOT_BYTES_MAX = 1024 * MiB;
export const SNAPSHOT_METADATA_BYTES_MAX = 1 * MiB;
export const SNAPSHOTS_KEPT_DEFAULT = 3;

assert(RECORD_HEADER_BYTES % RECORD_ALIGN_BYTES === 0, 'header keeps payloads aligned');
assert(RECORD_FRAME_BYTES_MAX % RECORD_ALIGN_BYTES === 0, 'max frame is aligned');
assert(RECORD_FRAME_BYTES_MAX <= BATCH_BYTES_MAX, 'one max record fits one batch');
assert(BATCH_BUFFER_BYTES_INITIAL <= BATCH_BYTES_MAX, 'initial batch buffer within max');
assert(RECORD_FRAME_BYTES_MAX < SEGMENT_BYTES_DEFAULT, 'default segment holds a max record');
assert(SEGMENT_BYTES_MIN % RECORD_ALIGN_BYTES === 0, 'segment sizes are aligned');
assert(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT, 'default segment size within range');
assert(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_OPTION_MAX, 'default segment size within range');
assert(SEGMENT_BYTES_MAX < 2 ** 32, 'segment offsets fit the u32 position seed of the CRC');
assert(SNAPSHOT_METADATA_BYTES_MAX < SNAPSHOT_BYTES_MAX, 'snapshot metadata within snapshot');
assert(REWRITE_BATCH_BYTES + RECORD_FRAME_BYTES_MAX <= BATCH_BYTES_MAX, 'a rewrite batch fits');
assert(DAMAGED_SPANS_MAX >= 1 && MISSING_ENTRIES_MAX >= 1, 'recovery limits are positive');
