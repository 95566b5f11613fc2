/**
 * Linearizability checker for a history of register operations (read, write, compare-and-set),
 * one register per key.
 *
 * Algorithm: the Wing & Gong search ("Testing and verifying concurrent objects", JPDC 1993) in
 * Lowe's formulation ("Testing for linearizability", Concurrency and Computation 2017), as
 * Porcupine (github.com/anishathalye/porcupine) implements it:
 *
 * - the history becomes a doubly linked list of call and return entries in time order;
 * - the search walks the list from its head: at a call it tries to linearize that operation now
 *   (legal in the model's current state) and, if so, lifts both its entries out of the list and
 *   restarts from the head; at a return it has reached an operation that had to take effect
 *   before this point but was not placed, so it backtracks (pops the last linearized operation,
 *   puts its entries back and tries the next call after it);
 * - Lowe's memoization: a set of (linearized-operations bitset, model state) configurations
 *   already explored; reaching one again cannot succeed where it failed before, so it is skipped;
 * - P-compositionality (Herlihy & Wing's locality; Lowe §5): a history is linearizable iff each
 *   key's sub-history is, so each key is searched alone (exponentially cheaper).
 *
 * Unknown outcomes (`info`) are handled as Knossos and Porcupine do: the completion time is
 * infinity, so the operation is concurrent with everything after its invocation. It is also
 * optional: since every return at infinity sorts after every finite return, reaching the return
 * entry of an `info` operation during the walk means every `ok` operation is already linearized,
 * which is success — the `info` operations still in the list are those that never took effect.
 * `fail` operations did not take effect and are dropped; `info` reads constrain nothing and are
 * dropped.
 *
 * One sound pruning beyond Lowe: an `info` write or cas whose written value no other operation
 * can observe (no `ok` read returns it, no cas expects it) is dropped. In any linearization that
 * contains it, the operations between it and the next write would have to accept its value, so
 * there are none, and removing it leaves a linearization. Without this, each unobserved unknown
 * write doubles the configurations (placed-then-overwritten vs not placed).
 *
 * The search is bounded by a step budget and a cache budget per key; exceeding either gives the
 * verdict `unknown`, never `ok`. On a violation the result explains the key: the longest
 * linearizable prefix found, the model state after it, and the operation that could not be
 * placed before its completion (with the concurrent candidates that could not be placed either).
 */
import { assert } from '../util/assert.js';
import { Prng } from '../util/prng.js';
import { CheckInputError } from './errors.js';
import {
  type CasValue,
  describeOperation,
  fmtValue,
  type Operation,
  pushTo,
  type Value,
} from './history.js';
import {
  EXPLANATION_CANDIDATES_MAX,
  EXPLANATION_PREFIX_OPS_SHOWN,
  LINEARIZABILITY_CACHE_BYTES_PER_KEY_DEFAULT,
  LINEARIZABILITY_CACHE_ENTRY_OVERHEAD_BYTES,
  LINEARIZABILITY_OPS_PER_KEY_MAX,
  LINEARIZABILITY_STEPS_PER_KEY_DEFAULT,
} from './limits.js';

export type Verdict = 'ok' | 'violation' | 'unknown';

export interface LinearizabilityOptions {
  /** Search steps per key before giving up with `unknown`. */
  readonly stepsPerKeyMax?: number;
  /** Estimated memo-cache bytes per key before giving up with `unknown`. */
  readonly cacheBytesPerKeyMax?: number;
}

export interface ViolationExplanation {
  readonly key: string;
  /** The longest linearizable prefix found, in linearization order. */
  readonly prefix: readonly Operation[];
  /** The register's value after that prefix. */
  readonly stateAfterPrefix: Value;
  /** The operation whose completion was reached while it could not be placed. */
  readonly blocking: Operation;
  /** Other operations pending at that point that could not be placed either (bounded). */
  readonly candidates: readonly Operation[];
  /** A few lines a human can read. */
  readonly text: string;
}

export interface KeyResult {
  readonly key: string;
  readonly verdict: Verdict;
  /** Operations searched (after dropping fail, info reads and unobservable info writes). */
  readonly opsSearched: number;
  readonly opsDropped: number;
  readonly steps: number;
  readonly cacheEntries: number;
  /** Why the verdict is `unknown`. */
  readonly unknownReason?: 'steps' | 'cache';
  readonly explanation?: ViolationExplanation;
}

export interface LinearizabilityResult {
  /** `violation` if any key has one; else `unknown` if any key is unknown; else `ok`. */
  readonly verdict: Verdict;
  readonly keys: readonly KeyResult[];
  readonly stepsTotal: number;
  readonly violations: readonly ViolationExplanation[];
}

/** Checks every key's sub-history independently (P-compositionality). */
export function checkLinearizability(
  ops: readonly Operation[],
  options: LinearizabilityOptions = {},
): LinearizabilityResult {
  const stepsMax = options.stepsPerKeyMax ?? LINEARIZABILITY_STEPS_PER_KEY_DEFAULT;
  const cacheBytesMax = options.cacheBytesPerKeyMax ?? LINEARIZABILITY_CACHE_BYTES_PER_KEY_DEFAULT;
  if (!Number.isSafeInteger(stepsMax) || stepsMax <= 0) {
    throw new CheckInputError('CHECK_INPUT_INVALID', `stepsPerKeyMax must be a positive integer`);
  }
  if (!(cacheBytesMax > 0)) {
    throw new CheckInputError('CHECK_INPUT_INVALID', `cacheBytesPerKeyMax must be positive`);
  }
  const byKey = new Map<string, Operation[]>();
  for (const op of ops) {
    pushTo(byKey, op.key, op);
  }
  const keys: KeyResult[] = [];
  for (const key of [...byKey.keys()].sort()) {
    keys.push(checkKey(key, byKey.get(key)!, stepsMax, cacheBytesMax));
  }
  const violations = keys.flatMap((k) => (k.explanation ? [k.explanation] : []));
  const verdict: Verdict =
    violations.length > 0
      ? 'violation'
      : keys.some((k) => k.verdict === 'unknown')
        ? 'unknown'
        : 'ok';
  return { verdict, keys, stepsTotal: keys.reduce((s, k) => s + k.steps, 0), violations };
}

/** The operations of one key that the search must consider (see the module comment). */
export function opsToSearch(keyOps: readonly Operation[]): Operation[] {
  let kept = keyOps.filter((op) => op.status === 'ok' || (op.status === 'info' && op.f !== 'read'));
  // Drop unobservable unknown writes, to a fixpoint: dropping an info cas removes what it expects.
  for (;;) {
    const observed = new Set<Value>();
    for (const op of kept) {
      if (op.f === 'read') observed.add(op.output ?? null);
      else if (op.f === 'cas') observed.add((op.input as CasValue)[0]);
    }
    const next = kept.filter((op) => op.status === 'ok' || observed.has(writtenValue(op)));
    if (next.length === kept.length) return kept;
    kept = next;
  }
}

function writtenValue(op: Operation): Value {
  assert(op.f !== 'read');
  return op.f === 'write' ? (op.input as Value) : (op.input as CasValue)[1];
}

// ---------------------------------------------------------------------------------------------
// The search on one key

const KIND_READ = 0;
const KIND_WRITE = 1;
const KIND_CAS = 2;
/** The interned id of `null` (absent): the register's initial state. */
const STATE_INITIAL = 0;

interface CacheEntry {
  readonly bits: Uint32Array;
  readonly state: number;
}

function checkKey(
  key: string,
  keyOps: readonly Operation[],
  stepsMax: number,
  cacheBytesMax: number,
): KeyResult {
  const ops = opsToSearch(keyOps);
  const n = ops.length;
  if (n > LINEARIZABILITY_OPS_PER_KEY_MAX) {
    throw new CheckInputError(
      'CHECK_INPUT_INVALID',
      `key "${key}" has ${n} operations, more than ${LINEARIZABILITY_OPS_PER_KEY_MAX}`,
    );
  }
  const base = { key, opsSearched: n, opsDropped: keyOps.length - n };

  // Intern values as small integers (null → 0) and encode each operation.
  const valueIds = new Map<Value, number>([[null, STATE_INITIAL]]);
  const valueById: Value[] = [null];
  const intern = (v: Value): number => {
    let id = valueIds.get(v);
    if (id === undefined) {
      id = valueById.length;
      valueIds.set(v, id);
      valueById.push(v);
    }
    return id;
  };
  const kind = new Uint8Array(n);
  const argA = new Int32Array(n); // read: output; write: value; cas: expected
  const argB = new Int32Array(n); // cas: new
  const optional = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    optional[i] = op.status === 'info' ? 1 : 0;
    if (op.f === 'read') {
      kind[i] = KIND_READ;
      argA[i] = intern(op.output ?? null);
    } else if (op.f === 'write') {
      kind[i] = KIND_WRITE;
      argA[i] = intern(op.input as Value);
    } else {
      kind[i] = KIND_CAS;
      const [expected, next] = op.input as CasValue;
      argA[i] = intern(expected);
      argB[i] = intern(next);
    }
    assert(
      op.status !== 'info' || op.completeMs === Number.POSITIVE_INFINITY,
      'info ⇒ completeMs = ∞',
    );
  }

  // The event list: entry 2i is operation i's call, 2i+1 its return; entry 2n is the head
  // sentinel; -1 ends the list. Calls sort before returns at the same instant, so operations
  // that touch (one completes when the other is invoked) stay concurrent, as in Porcupine.
  const entryCount = 2 * n;
  const order = new Int32Array(entryCount);
  for (let e = 0; e < entryCount; e++) order[e] = e;
  const timeOf = (e: number): number => (e & 1 ? ops[e >> 1]!.completeMs : ops[e >> 1]!.invokeMs);
  order.sort((a, b) => timeOf(a) - timeOf(b) || (a & 1) - (b & 1) || a - b);
  const HEAD = entryCount;
  const next = new Int32Array(entryCount + 1);
  const prev = new Int32Array(entryCount + 1);
  let last = HEAD;
  for (let k = 0; k < entryCount; k++) {
    const e = order[k]!;
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  next[last] = -1;

  // Lift and unlift as in dancing links: unlifting in reverse order restores the list exactly.
  const unlink = (e: number): void => {
    next[prev[e]!] = next[e]!;
    if (next[e] !== -1) prev[next[e]!] = prev[e]!;
  };
  const relink = (e: number): void => {
    next[prev[e]!] = e;
    if (next[e] !== -1) prev[next[e]!] = e;
  };

  // Memo cache: Zobrist hash of the bitset, mixed with the state, → configurations.
  const words = (n + 31) >>> 5;
  const bits = new Uint32Array(words);
  const zobrist = new Uint32Array(n);
  const rng = new Prng(0x11ea7);
  for (let i = 0; i < n; i++) zobrist[i] = rng.u32();
  const cache = new Map<number, CacheEntry[]>();
  const cacheEntryBytes = words * 4 + LINEARIZABILITY_CACHE_ENTRY_OVERHEAD_BYTES;
  const cacheEntriesMax = Math.max(1, Math.floor(cacheBytesMax / cacheEntryBytes));
  let cacheEntries = 0;
  let hash = 0;
  /** Adds the current configuration; false if it was already explored. */
  const cacheAdd = (state: number): boolean => {
    const h = (hash ^ Math.imul(state + 1, 0x9e3779b1)) >>> 0;
    const bucket = cache.get(h);
    if (bucket !== undefined) {
      for (const c of bucket) if (c.state === state && equalBits(c.bits, bits)) return false;
    }
    pushTo(cache, h, { bits: bits.slice(), state });
    cacheEntries++;
    return true;
  };

  const stackOp = new Int32Array(n);
  const stackState = new Int32Array(n);
  let depth = 0;
  let state = STATE_INITIAL;
  let steps = 0;
  // The deepest point where the walk met an unplaced return: the explanation of a violation.
  let best: { prefix: number[]; state: number; blocking: number; candidates: number[] } | undefined;

  let entry = next[HEAD]!;
  for (;;) {
    if (steps >= stepsMax)
      return { ...base, verdict: 'unknown', steps, cacheEntries, unknownReason: 'steps' };
    if (cacheEntries >= cacheEntriesMax) {
      return { ...base, verdict: 'unknown', steps, cacheEntries, unknownReason: 'cache' };
    }
    steps++;
    if (entry === -1) break; // every operation linearized
    const op = entry >> 1;
    if ((entry & 1) === 0) {
      // A call: try to linearize `op` now.
      const k = kind[op]!;
      const legal = k === KIND_WRITE || state === argA[op];
      if (legal) {
        const newState = k === KIND_READ ? state : k === KIND_WRITE ? argA[op]! : argB[op]!;
        bits[op >>> 5]! |= 1 << (op & 31);
        hash ^= zobrist[op]!;
        if (cacheAdd(newState)) {
          stackOp[depth] = op;
          stackState[depth] = state;
          depth++;
          state = newState;
          unlink(2 * op);
          unlink(2 * op + 1);
          entry = next[HEAD]!;
          continue;
        }
        bits[op >>> 5]! &= ~(1 << (op & 31));
        hash ^= zobrist[op]!;
      }
      entry = next[entry]!;
      continue;
    }
    // A return of an operation not yet linearized.
    if (optional[op] === 1) break; // only unknown outcomes remain: they never took effect
    if (best === undefined || depth > best.prefix.length) {
      const candidates: number[] = [];
      for (
        let e = next[HEAD]!;
        e !== entry && candidates.length < EXPLANATION_CANDIDATES_MAX;
        e = next[e]!
      ) {
        if ((e & 1) === 0 && e >> 1 !== op) candidates.push(e >> 1);
      }
      best = { prefix: Array.from(stackOp.subarray(0, depth)), state, blocking: op, candidates };
    }
    if (depth === 0) {
      assert(best !== undefined);
      const explanation = explain(key, ops, valueById, best);
      return { ...base, verdict: 'violation', steps, cacheEntries, explanation };
    }
    depth--;
    const undone = stackOp[depth]!;
    state = stackState[depth]!;
    bits[undone >>> 5]! &= ~(1 << (undone & 31));
    hash ^= zobrist[undone]!;
    relink(2 * undone + 1);
    relink(2 * undone);
    entry = next[2 * undone]!;
  }
  // Check the success twice: every operation with a known outcome is in the linearization.
  for (let i = 0; i < n; i++) {
    assert(optional[i] === 1 || (bits[i >>> 5]! >>> (i & 31)) & 1, `op ${i} not linearized`);
  }
  assert(depth <= n);
  return { ...base, verdict: 'ok', steps, cacheEntries };
}

function equalBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Explanations

function explain(
  key: string,
  ops: readonly Operation[],
  valueById: readonly Value[],
  best: { prefix: number[]; state: number; blocking: number; candidates: number[] },
): ViolationExplanation {
  const prefix = best.prefix.map((i) => ops[i]!);
  const blocking = ops[best.blocking]!;
  const candidates = best.candidates.map((i) => ops[i]!);
  const stateAfterPrefix = valueById[best.state]!;
  const lines: string[] = [];
  lines.push(
    `key ${JSON.stringify(key)}: no linearization exists. The longest linearizable prefix has ` +
      `${prefix.length} of ${ops.length} operations and leaves the register at ${fmtValue(stateAfterPrefix)}.`,
  );
  if (prefix.length > 0) {
    const shown = prefix.slice(-EXPLANATION_PREFIX_OPS_SHOWN);
    if (shown.length < prefix.length)
      lines.push(`  … ${prefix.length - shown.length} earlier operations`);
    for (const op of shown) lines.push(`  ${describeOperation(op)}`);
  }
  lines.push(`Cannot be placed before its completion: ${describeOperation(blocking)}`);
  lines.push(`  ${whyIllegal(blocking, stateAfterPrefix, ops)}`);
  if (candidates.length > 0) {
    lines.push('Pending at that point, none of which leads to a linearization either:');
    for (const op of candidates) lines.push(`  ${describeOperation(op)}`);
  }
  return { key, prefix, stateAfterPrefix, blocking, candidates, text: lines.join('\n') };
}

function whyIllegal(op: Operation, state: Value, ops: readonly Operation[]): string {
  const needed =
    op.f === 'read' ? (op.output ?? null) : op.f === 'cas' ? (op.input as CasValue)[0] : undefined;
  if (needed === undefined)
    return 'a write is always legal, yet no order of its predecessors works';
  const writers = ops.filter((o) => o.f !== 'read' && writtenValue(o) === needed);
  const what = op.f === 'read' ? `it read ${fmtValue(needed)}` : `it expected ${fmtValue(needed)}`;
  if (needed !== null && writers.length === 0)
    return `${what}, a value no operation on the key ever wrote`;
  if (needed === state) return `${what}, the current value, but every order through it fails later`;
  return `${what} but the register holds ${fmtValue(state)} and no pending write can restore it in time`;
}
