/**
 * The naive reference for the linearizability checker (STYLE practice 12): the definition of
 * linearizability (Herlihy & Wing 1990) executed literally, for tiny histories only.
 *
 * A history is linearizable iff some subset S of its unknown-outcome (`info`) operations and
 * some total order of (the `ok` operations ∪ S)
 *   1. respects real time: if a completed before b was invoked (a.completeMs < b.invokeMs), a
 *      comes first; and
 *   2. is a legal sequential execution of one register per key (all keys together, so that
 *      P-compositionality is checked too, not assumed).
 * `fail` operations never took effect and are left out; an `info` read, if chosen, may return
 * anything.
 *
 * Every subset and every permutation are enumerated, then filtered: no pruning, no memo, no
 * cleverness, so that it shares no idea with the Wing–Gong–Lowe search it checks.
 */
import { CheckInputError } from './errors.js';
import type { CasValue, Operation, Value } from './history.js';
import { REFERENCE_OPS_MAX } from './limits.js';

export function isLinearizableNaive(ops: readonly Operation[]): boolean {
  const required = ops.filter((op) => op.status === 'ok');
  const unknown = ops.filter((op) => op.status === 'info');
  if (required.length + unknown.length > REFERENCE_OPS_MAX) {
    throw new CheckInputError(
      'REFERENCE_TOO_LARGE',
      `the naive reference takes at most ${REFERENCE_OPS_MAX} operations, got ${required.length + unknown.length}`,
    );
  }
  for (let mask = 0; mask < 1 << unknown.length; mask++) {
    const chosen = [...required, ...unknown.filter((_, i) => (mask >> i) & 1)];
    for (const order of permutations(chosen)) {
      if (respectsRealTime(order) && legalSequentially(order)) return true;
    }
  }
  return false;
}

function* permutations<T>(items: readonly T[]): Generator<T[]> {
  if (items.length <= 1) {
    yield [...items];
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const rest = [...items.slice(0, i), ...items.slice(i + 1)];
    for (const tail of permutations(rest)) yield [items[i]!, ...tail];
  }
}

function respectsRealTime(order: readonly Operation[]): boolean {
  for (let i = 0; i < order.length; i++) {
    for (let j = i + 1; j < order.length; j++) {
      // order[j] is placed after order[i]: wrong if it completed before order[i] was invoked.
      if (order[j]!.completeMs < order[i]!.invokeMs) return false;
    }
  }
  return true;
}

function legalSequentially(order: readonly Operation[]): boolean {
  const registers = new Map<string, Value>();
  for (const op of order) {
    const current = registers.get(op.key) ?? null;
    if (op.f === 'read') {
      if (op.status === 'ok' && op.output !== current) return false;
    } else if (op.f === 'write') {
      registers.set(op.key, op.input as Value);
    } else {
      const [expected, next] = op.input as CasValue;
      if (current !== expected) return false;
      registers.set(op.key, next);
    }
  }
  return true;
}
