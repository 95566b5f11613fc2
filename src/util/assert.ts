/**
 * Assertions that stay on in production (TigerBeetle style): a failed assertion is a bug found
 * early, never a condition to recover from. Use `assert` for invariants, never for input checks;
 * bad input gets a typed error instead.
 */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: unknown, message?: string): asserts condition {
  if (!condition) throw new AssertionError(message ?? 'assertion failed');
}

export function unreachable(value: never, message?: string): never {
  throw new AssertionError(message ?? `unreachable: ${String(value)}`);
}

/** Asserts that `n` is a non-negative safe integer (indexes, terms, revisions, sizes). */
export function assertUint(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new AssertionError(`${what} must be a non-negative safe integer, got ${n}`);
  }
}
