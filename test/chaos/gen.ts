/**
 * Test helpers: terse builders for hand-made histories, and generators of random histories —
 * linearizable ones by simulating a register with random real-time overlaps, and arbitrary ones.
 */
import {
  type CasValue,
  historyFromOperations,
  type Operation,
  type OpFunction,
  type OpStatus,
  pairOperations,
  type Value,
} from '../../src/chaos/history.js';
import { Prng } from '../../src/util/prng.js';

type Draft = { -readonly [K in keyof Operation]: Operation[K] };
const INF = Number.POSITIVE_INFINITY;

function draft(
  process: number,
  f: OpFunction,
  key: string,
  input: Value | CasValue,
  output: Value | undefined,
  invokeMs: number,
  completeMs: number,
  status: OpStatus,
): Draft {
  return {
    id: -1,
    process,
    f,
    key,
    input,
    output: status === 'ok' ? output : undefined,
    invokeMs,
    completeMs: status === 'info' ? INF : completeMs,
    status,
  };
}

/** write: `w(process, key, value, invokeMs, completeMs, status?)`. */
export const w = (p: number, key: string, v: Value, t0: number, t1: number, s: OpStatus = 'ok') =>
  draft(p, 'write', key, v, undefined, t0, t1, s);
/** read returning `out`: `r(process, key, out, invokeMs, completeMs, status?)`. */
export const r = (p: number, key: string, out: Value, t0: number, t1: number, s: OpStatus = 'ok') =>
  draft(p, 'read', key, null, out, t0, t1, s);
/** compare-and-set `expected → next`. */
export const cas = (
  p: number,
  key: string,
  expected: Value,
  next: Value,
  t0: number,
  t1: number,
  s: OpStatus = 'ok',
) => draft(p, 'cas', key, [expected, next], undefined, t0, t1, s);

/** Round-trips hand-made operations through the event format and pairing (validates them). */
export function build(ops: readonly Operation[]): Operation[] {
  return pairOperations(historyFromOperations(ops));
}

export interface GenOptions {
  readonly ops: number;
  readonly processes: number;
  readonly keys: number;
  /** Values written are drawn from 1..valuesMax (small → collisions); 0 = unique values. */
  readonly valuesMax: number;
  readonly infoRate: number;
  readonly readRate: number;
  readonly casRate: number;
  /** Longest operation, ms; long operations overlap more. */
  readonly durationMsMax: number;
  /** Longest think time between a process's operations, ms. */
  readonly gapMsMax: number;
}

export interface Generated {
  readonly ops: Operation[];
  /** Final value of each key (after every effect). */
  readonly finalState: Map<string, Value>;
}

/**
 * A linearizable history by construction: each operation gets a linearization point inside
 * [invoke, complete] (an unknown outcome takes effect at a point or not at all), and the
 * register is applied in linearization-point order to compute what reads and cas observe. A
 * cas whose compare fails is recorded as `fail` (Jepsen's convention). Applied writes and cas
 * get revisions in effect order, as etcd would assign them.
 */
export function genLinearizable(seed: number, o: GenOptions): Generated {
  const rng = new Prng(seed);
  interface Planned {
    d: Draft;
    pointMs: number;
    applied: boolean;
  }
  const planned: Planned[] = [];
  let nextProcess = o.processes;
  const slots = Array.from({ length: o.processes }, (_, i) => ({ process: i, freeAtMs: 0 }));
  let unique = 0;
  const value = (): Value => (o.valuesMax === 0 ? ++unique : 1 + rng.int(o.valuesMax));
  for (let i = 0; i < o.ops; i++) {
    const slot = rng.pick(slots);
    const t0 = slot.freeAtMs + rng.int(o.gapMsMax + 1);
    const t1 = t0 + rng.int(o.durationMsMax + 1);
    const key = `k${rng.int(o.keys)}`;
    const roll = rng.float();
    const info = rng.chance(o.infoRate);
    let d: Draft;
    if (roll < o.readRate) d = r(slot.process, key, null, t0, t1);
    else if (roll < o.readRate + o.casRate) {
      d = cas(slot.process, key, rng.chance(0.2) ? null : value(), value(), t0, t1);
    } else d = w(slot.process, key, value(), t0, t1);
    const pointMs = t0 + rng.float() * (t1 - t0);
    // An unknown outcome took effect (at its point) or did not, with even odds.
    planned.push({ d, pointMs, applied: !info || rng.chance(0.5) });
    if (info) {
      d.status = 'info';
      d.completeMs = INF;
      d.output = undefined;
      slot.process = nextProcess++; // Jepsen's rule: the client continues as a new process
      slot.freeAtMs = t1;
    } else {
      slot.freeAtMs = t1;
    }
  }
  const registers = new Map<string, Value>();
  let revision = 0;
  for (const p of [...planned].sort((a, b) => a.pointMs - b.pointMs)) {
    const d = p.d;
    const current = registers.get(d.key) ?? null;
    if (d.f === 'read') {
      if (d.status === 'ok') d.output = current;
    } else if (d.f === 'write') {
      if (p.applied) {
        registers.set(d.key, d.input as Value);
        revision++;
        if (d.status === 'ok') d.revision = revision;
      }
    } else {
      const [expected, next] = d.input as CasValue;
      if (current !== expected) {
        if (d.status === 'ok') d.status = 'fail';
      } else if (p.applied) {
        registers.set(d.key, next);
        revision++;
        if (d.status === 'ok') d.revision = revision;
      }
    }
  }
  return { ops: build(planned.map((p) => p.d)), finalState: registers };
}

/** An arbitrary history (statuses, outputs and times at random): usually not linearizable. */
export function genArbitrary(seed: number, o: GenOptions): Operation[] {
  const rng = new Prng(seed);
  const drafts: Draft[] = [];
  let nextProcess = o.processes;
  const slots = Array.from({ length: o.processes }, (_, i) => ({ process: i, freeAtMs: 0 }));
  const value = (): Value => 1 + rng.int(Math.max(1, o.valuesMax));
  for (let i = 0; i < o.ops; i++) {
    const slot = rng.pick(slots);
    const t0 = slot.freeAtMs + rng.int(o.gapMsMax + 1);
    const t1 = t0 + rng.int(o.durationMsMax + 1);
    const key = `k${rng.int(o.keys)}`;
    const roll = rng.float();
    const status: OpStatus = rng.chance(o.infoRate) ? 'info' : rng.chance(0.15) ? 'fail' : 'ok';
    let d: Draft;
    if (roll < o.readRate)
      d = r(slot.process, key, rng.chance(0.2) ? null : value(), t0, t1, status);
    else if (roll < o.readRate + o.casRate) {
      d = cas(slot.process, key, rng.chance(0.3) ? null : value(), value(), t0, t1, status);
    } else d = w(slot.process, key, value(), t0, t1, status);
    drafts.push(d);
    slot.freeAtMs = t1;
    if (status === 'info') slot.process = nextProcess++;
  }
  return build(drafts);
}
