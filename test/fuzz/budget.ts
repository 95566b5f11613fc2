/**
 * The fuzzers' budget: a small fixed number of runs per property inside `npm test` (fast, and
 * the same seed every time unless FUZZ_SEED says otherwise, so a failure reproduces), many more
 * under `npm run fuzz` (FUZZ_RUNS, random seed printed by fast-check on failure).
 */
import type { Parameters } from 'fast-check';

const RUNS_DEFAULT = 150;
/** Fixed in `npm test`, so the suite is deterministic. */
const SEED_DEFAULT = 20261204;

export function fuzzParams<T>(scale = 1): Parameters<T> {
  const runs = Number(process.env.FUZZ_RUNS ?? RUNS_DEFAULT);
  const seedText = process.env.FUZZ_SEED;
  const random = process.env.FUZZ_RUNS !== undefined && seedText === undefined;
  return {
    numRuns: Math.max(1, Math.round(runs * scale)),
    ...(random ? {} : { seed: Number(seedText ?? SEED_DEFAULT) }),
  };
}

/** A node:test timeout for one fuzz file: generous for `npm run fuzz`, tight in `npm test`. */
export function fuzzTimeoutMs(): number {
  return process.env.FUZZ_RUNS === undefined ? 60_000 : 3_600_000;
}

/**
 * Runs `body` while recording the largest Buffer.allocUnsafe / Buffer.alloc request: how the
 * tests check that hostile lengths never turn into big allocations.
 */
export function largestAllocation(body: () => void): number {
  const unsafe = Buffer.allocUnsafe;
  const safe = Buffer.alloc;
  let largest = 0;
  Buffer.allocUnsafe = ((size: number) => {
    largest = Math.max(largest, size);
    return unsafe(size);
  }) as typeof Buffer.allocUnsafe;
  Buffer.alloc = ((size: number, ...rest: unknown[]) => {
    largest = Math.max(largest, size);
    return (safe as (...a: unknown[]) => Buffer)(size, ...rest);
  }) as typeof Buffer.alloc;
  try {
    body();
  } finally {
    Buffer.allocUnsafe = unsafe;
    Buffer.alloc = safe;
  }
  return largest;
}
