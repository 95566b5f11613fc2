/**
 * Property tests: random sequences of puts, deletes, multi-put txns, compactions and historical
 * ranges, applied to the memory and LMDB state machines in lockstep and checked against a naive
 * model that keeps a full copy of the key space at every revision.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { KvRequest } from '../../src/kv/api-types.js';
import { encodeCommand } from '../../src/kv/mvcc/command.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import {
  BACKENDS,
  compact,
  del,
  FakeLessor,
  get,
  type KvTuple,
  type Printed,
  printResult,
  put,
  txn,
} from './mvcc-helpers.js';

interface ModelKv {
  value: string;
  create: number;
  mod: number;
  version: number;
}

/** The obvious implementation: a whole map per revision. */
class Model {
  rev = 1;
  compactRev = -1;
  readonly states = new Map<number, Map<string, ModelKv>>([[1, new Map()]]);

  private cur(): Map<string, ModelKv> {
    return this.states.get(this.rev)!;
  }

  private commit(next: Map<string, ModelKv>): void {
    this.rev++;
    this.states.set(this.rev, next);
  }

  put(pairs: [string, string][]): Printed {
    const next = new Map(this.cur());
    const rev = this.rev + 1;
    for (const [k, v] of pairs) {
      const prev = next.get(k);
      next.set(k, {
        value: v,
        create: prev?.create ?? rev,
        mod: rev,
        version: (prev?.version ?? 0) + 1,
      });
    }
    this.commit(next);
    return { rev };
  }

  del(key: string, end: string): Printed {
    const doomed = [...this.cur().keys()].filter((k) => inRange(k, key, end));
    if (doomed.length === 0) return { rev: this.rev, deleted: 0 };
    const next = new Map(this.cur());
    for (const k of doomed) next.delete(k);
    this.commit(next);
    return { rev: this.rev, deleted: doomed.length };
  }

  compact(r: number): Printed {
    if (r <= this.compactRev) return { error: 'COMPACTED' };
    if (r > this.rev) return { error: 'FUTURE_REV' };
    this.compactRev = r;
    return { rev: this.rev };
  }

  range(key: string, end: string, atRev: number, limit: number): Printed {
    if (atRev > this.rev) return { error: 'FUTURE_REV' };
    const at = atRev <= 0 ? this.rev : atRev;
    if (at < this.compactRev) return { error: 'COMPACTED' };
    const all = [...this.states.get(at)!.entries()]
      .filter(([k]) => inRange(k, key, end))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const shown = limit > 0 ? all.slice(0, limit) : all;
    const kvs: KvTuple[] = shown.map(([k, v]) => [k, v.value, v.create, v.mod, v.version]);
    return { rev: this.rev, kvs, count: all.length, more: limit > 0 && all.length > limit };
  }
}

function inRange(k: string, key: string, end: string): boolean {
  if (end === '') return k === key;
  if (end === '\0') return k >= key;
  return k >= key && k < end;
}

const KEYS = ['a', 'ab', 'abc', 'b', 'ba', 'c', 'c\u00ff', 'd\u0000'];
const key = fc.constantFrom(...KEYS);
const end = fc.constantFrom('', '', '\0', ...KEYS, 'e');

type Step =
  | { op: 'put'; pairs: [string, string][] }
  | { op: 'del'; key: string; end: string }
  | { op: 'compact'; back: number }
  | { op: 'range'; key: string; end: string; back: number; limit: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('put' as const),
      pairs: fc.uniqueArray(fc.tuple(key, fc.string({ maxLength: 3 })), {
        minLength: 1,
        maxLength: 3,
        selector: ([k]) => k,
      }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('del' as const), key, end }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('compact' as const),
      back: fc.integer({ min: -1, max: 6 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('range' as const),
      key,
      end,
      back: fc.integer({ min: -2, max: 8 }),
      limit: fc.integer({ min: -1, max: 4 }),
    }),
  },
);

/** The request for a step and the model's answer; `back` counts revisions back from current. */
function plan(model: Model, s: Step): [KvRequest, Printed] {
  switch (s.op) {
    case 'put': {
      const req =
        s.pairs.length === 1
          ? put(...s.pairs[0]!)
          : txn({ success: s.pairs.map(([k, v]) => put(k, v)) });
      const want = model.put(s.pairs);
      if (s.pairs.length === 1) return [req, want];
      return [req, { rev: want.rev, ok: true, ops: s.pairs.map(() => ({ rev: want.rev })) }];
    }
    case 'del':
      return [del(s.key, { end: s.end }), model.del(s.key, s.end)];
    case 'compact': {
      const r = Math.max(0, model.rev - s.back);
      return [compact(r), model.compact(r)];
    }
    case 'range': {
      const r = s.back < 0 ? 0 : Math.max(1, model.rev - s.back + 1);
      return [
        get(s.key, { end: s.end, revision: r, limit: s.limit }),
        model.range(s.key, s.end, r, s.limit),
      ];
    }
  }
}

test('memory and LMDB agree with the naive model on every step, and on hashKv', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(stepArb, { minLength: 20, maxLength: 150 }), async (steps) => {
      const made = BACKENDS.map((b) => b.create());
      try {
        const sms = made.map((m) => KvStateMachine.open(m.backend, { lessor: new FakeLessor() }));
        const model = new Model();
        steps.forEach((s, i) => {
          const [req, want] = plan(model, s);
          const command = encodeCommand(req);
          for (const sm of sms) {
            assert.deepEqual(
              printResult(sm.apply(i + 1, command)),
              want,
              `step ${i} ${JSON.stringify(s)}`,
            );
          }
        });
        const [a, b] = sms.map((sm) => sm.hash());
        assert.deepEqual(a, b);
        assert.equal(a!.revision, model.rev);
        // Reopened from LMDB (key index rebuilt from the backend), every revision reads the same.
        const lmdb = made[BACKENDS.findIndex((k) => k.name === 'lmdb')]!;
        await lmdb.backend.close();
        const reopened = KvStateMachine.open(lmdb.reopen(), { lessor: new FakeLessor() });
        assert.deepEqual(reopened.hash(), a);
        for (let r = Math.max(1, model.compactRev); r <= model.rev; r++) {
          const req = get('a', { end: '\0', revision: r });
          const got = printResult(reopened.apply(steps.length + r, encodeCommand(req)));
          assert.deepEqual(got, model.range('a', '\0', r, 0), `after reopen, revision ${r}`);
        }
      } finally {
        for (const m of made) await m.cleanup();
      }
    }),
    { numRuns: 100 },
  );
});
