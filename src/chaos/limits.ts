/**
 * Every limit of the chaos analysis, named, with units, and their relations asserted at load
 * (TigerBeetle style). Callers may lower a budget through options, never raise a hard maximum.
 */
import { assert } from '../util/assert.js';

const MiB = 1024 * 1024;

/** A history line longer than this is rejected (values are small in chaos workloads). */
export const HISTORY_LINE_BYTES_MAX = 64 * 1024;
/** Events in one history (invocations + completions): a run that records more is a runaway. */
export const HISTORY_EVENTS_MAX = 20_000_000;

/**
 * Default search budget of the linearizability checker, in search steps per key (one step = one
 * visit of an entry of the Wing–Gong–Lowe event list). Exceeded → the key's verdict is `unknown`.
 */
export const LINEARIZABILITY_STEPS_PER_KEY_DEFAULT = 5_000_000;
/** Default memory budget of the memo cache (Lowe's (bitset, state) set), per key. */
export const LINEARIZABILITY_CACHE_BYTES_PER_KEY_DEFAULT = 256 * MiB;
/** Estimated bytes of one cache entry besides its bitset words (object, array, map slot). */
export const LINEARIZABILITY_CACHE_ENTRY_OVERHEAD_BYTES = 96;
/** Operations on one key: bitsets and linked-list arrays are sized by it. */
export const LINEARIZABILITY_OPS_PER_KEY_MAX = 4_000_000;

/** A violation explanation shows at most this many operations of the linearizable prefix… */
export const EXPLANATION_PREFIX_OPS_SHOWN = 6;
/** …and at most this many concurrent candidates that could not be placed either. */
export const EXPLANATION_CANDIDATES_MAX = 8;

/** The naive reference enumerates (ops)! × 2^(unknown ops) orders: tiny histories only. */
export const REFERENCE_OPS_MAX = 8;

/** The HTML timeline draws at most this many operations (the file stays openable). */
export const TIMELINE_OPS_MAX = 50_000;

assert(LINEARIZABILITY_STEPS_PER_KEY_DEFAULT > 0);
assert(LINEARIZABILITY_OPS_PER_KEY_MAX * 2 + 1 < 2 ** 31, 'list entries index an Int32Array');
assert(LINEARIZABILITY_CACHE_BYTES_PER_KEY_DEFAULT > LINEARIZABILITY_CACHE_ENTRY_OVERHEAD_BYTES);
assert(EXPLANATION_CANDIDATES_MAX >= 1 && EXPLANATION_PREFIX_OPS_SHOWN >= 1);
assert(REFERENCE_OPS_MAX <= 10, 'the reference is factorial in its input');
