/**
 * etcd v3 KV conformance, table-driven, run against both backends. Each case is a sequence of
 * requests applied through the state machine (one Raft index each) and what etcd answers:
 * header revision, kvs as [key, value, create, mod, version(, lease)], count, more, prev_kv,
 * txn results, and error codes (see src/kv/errors.ts for etcd's messages). Doubtful cases were
 * checked against etcd 3.4.23 with etcdctl (noted "etcd-verified").
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { KvRequest, TxnResponse } from '../../src/kv/api-types.js';
import { SortOrder, SortTarget } from '../../src/kv/api-types.js';
import { KvError } from '../../src/kv/errors.js';
import { encodeCommand } from '../../src/kv/mvcc/command.js';
import { isReadOnlyTxn } from '../../src/kv/mvcc/execute.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import {
  BACKENDS,
  cmp,
  compact,
  del,
  FakeLessor,
  get,
  type KvTuple,
  type Printed,
  printResponse,
  printResult,
  put,
  txn,
} from './mvcc-helpers.js';

const R = (rev: number, kvs: KvTuple[], count = kvs.length, more = false): Printed => ({
  rev,
  kvs,
  count,
  more,
});
const P = (rev: number, prev?: KvTuple): Printed => (prev ? { rev, prev } : { rev });
const D = (rev: number, deleted: number, prev?: KvTuple[]): Printed =>
  prev ? { rev, deleted, prev } : { rev, deleted };
const T = (rev: number, ok: boolean, ops: Printed[]): Printed => ({ rev, ok, ops });
const C = (rev: number): Printed => ({ rev });
const E = (code: string): Printed => ({ error: code });

interface Case {
  readonly name: string;
  readonly leases?: bigint[];
  readonly steps: readonly (readonly [KvRequest, Printed])[];
  readonly after?: (sm: KvStateMachine, lessor: FakeLessor) => void;
}

const puts = (n: number, prefix = 'k'): KvRequest[] =>
  Array.from({ length: n }, (_, i) => put(`${prefix}${i}`, 'v'));

const CASES: readonly Case[] = [
  {
    name: 'a fresh store is at revision 1',
    steps: [[get('foo'), R(1, [])]],
  },
  {
    name: 'put, overwrite with prevKv',
    steps: [
      [put('foo', 'bar'), P(2)],
      [get('foo'), R(2, [['foo', 'bar', 2, 2, 1]])],
      [put('foo', 'baz', { prevKv: true }), P(3, ['foo', 'bar', 2, 2, 1])],
      [get('foo'), R(3, [['foo', 'baz', 2, 3, 2]])],
      [put('new', 'x', { prevKv: true }), P(4)],
    ],
  },
  {
    name: 'delete leaves a tombstone; a recreated key starts a new generation',
    steps: [
      [put('a', '1'), P(2)],
      [put('a', '2'), P(3)],
      [del('a'), D(4, 1)],
      [get('a'), R(4, [])],
      [put('a', '3'), P(5)],
      [get('a'), R(5, [['a', '3', 5, 5, 1]])],
      [get('a', { revision: 3 }), R(5, [['a', '2', 2, 3, 2]])],
      [get('a', { revision: 4 }), R(5, [])],
      [get('a', { revision: 1 }), R(5, [])],
      [del('a', { prevKv: true }), D(6, 1, [['a', '3', 5, 5, 1]])],
      // etcd-verified: deleting nothing leaves the revision alone.
      [del('a'), D(6, 0)],
      [del('zzz', { end: '\0' }), D(6, 0)],
    ],
  },
  {
    name: 'ranges: end, from-key, prefix, limit/more, count, keysOnly, countOnly',
    steps: [
      [put('a', '3'), P(2)],
      [put('ab', '1'), P(3)],
      [put('b', '4'), P(4)],
      [put('c', '2'), P(5)],
      [put('ab', '5'), P(6)],
      [
        get('a', { end: 'c' }),
        R(6, [
          ['a', '3', 2, 2, 1],
          ['ab', '5', 3, 6, 2],
          ['b', '4', 4, 4, 1],
        ]),
      ],
      [
        get('b', { end: '\0' }),
        R(6, [
          ['b', '4', 4, 4, 1],
          ['c', '2', 5, 5, 1],
        ]),
      ],
      [
        get('a', { end: 'b' }),
        R(6, [
          ['a', '3', 2, 2, 1],
          ['ab', '5', 3, 6, 2],
        ]),
      ],
      [
        get('a', { end: 'c', limit: 2 }),
        R(
          6,
          [
            ['a', '3', 2, 2, 1],
            ['ab', '5', 3, 6, 2],
          ],
          3,
          true,
        ),
      ],
      [
        get('a', { end: 'c', limit: 3 }),
        R(6, [
          ['a', '3', 2, 2, 1],
          ['ab', '5', 3, 6, 2],
          ['b', '4', 4, 4, 1],
        ]),
      ],
      [get('a', { end: '\0', countOnly: true }), R(6, [], 4)],
      [get('a', { end: '\0', countOnly: true, limit: 1 }), R(6, [], 4)],
      [get('a', { end: '\0', keysOnly: true, limit: 1 }), R(6, [['a', '', 2, 2, 1]], 4, true)],
      [get('c', { end: 'a' }), R(6, [])],
      [get('zz', { end: '\0' }), R(6, [])],
      [
        get('a', { end: '\0', limit: -1 }),
        R(6, [
          ['a', '3', 2, 2, 1],
          ['ab', '5', 3, 6, 2],
          ['b', '4', 4, 4, 1],
          ['c', '2', 5, 5, 1],
        ]),
      ],
      [
        get('a', { end: '\0', revision: 5 }),
        R(6, [
          ['a', '3', 2, 2, 1],
          ['ab', '1', 3, 3, 1],
          ['b', '4', 4, 4, 1],
          ['c', '2', 5, 5, 1],
        ]),
      ],
    ],
  },
  {
    name: 'sort orders and targets, filters (count is before filters, more after)',
    steps: [
      [put('a', '3'), P(2)],
      [put('ab', '1'), P(3)],
      [put('b', '4'), P(4)],
      [put('c', '2'), P(5)],
      [put('ab', '5'), P(6)],
      [
        get('a', { end: '\0', sortOrder: SortOrder.Descend }),
        R(6, [
          ['c', '2', 5, 5, 1],
          ['b', '4', 4, 4, 1],
          ['ab', '5', 3, 6, 2],
          ['a', '3', 2, 2, 1],
        ]),
      ],
      [
        get('a', { end: '\0', sortTarget: SortTarget.Value }),
        R(6, [
          ['c', '2', 5, 5, 1],
          ['a', '3', 2, 2, 1],
          ['b', '4', 4, 4, 1],
          ['ab', '5', 3, 6, 2],
        ]),
      ],
      [
        get('a', {
          end: '\0',
          sortTarget: SortTarget.Value,
          sortOrder: SortOrder.Descend,
          limit: 2,
        }),
        R(
          6,
          [
            ['ab', '5', 3, 6, 2],
            ['b', '4', 4, 4, 1],
          ],
          4,
          true,
        ),
      ],
      [
        get('a', { end: '\0', sortTarget: SortTarget.Mod }),
        R(6, [
          ['a', '3', 2, 2, 1],
          ['b', '4', 4, 4, 1],
          ['c', '2', 5, 5, 1],
          ['ab', '5', 3, 6, 2],
        ]),
      ],
      [
        get('a', { end: '\0', sortTarget: SortTarget.Create, sortOrder: SortOrder.Descend }),
        R(6, [
          ['c', '2', 5, 5, 1],
          ['b', '4', 4, 4, 1],
          ['ab', '5', 3, 6, 2],
          ['a', '3', 2, 2, 1],
        ]),
      ],
      [
        get('a', {
          end: '\0',
          sortTarget: SortTarget.Version,
          sortOrder: SortOrder.Descend,
          limit: 1,
        }),
        R(6, [['ab', '5', 3, 6, 2]], 4, true),
      ],
      [
        get('a', { end: '\0', sortOrder: SortOrder.Ascend, limit: 2 }),
        R(
          6,
          [
            ['a', '3', 2, 2, 1],
            ['ab', '5', 3, 6, 2],
          ],
          4,
          true,
        ),
      ],
      [
        get('a', { end: '\0', minModRevision: 5 }),
        R(
          6,
          [
            ['ab', '5', 3, 6, 2],
            ['c', '2', 5, 5, 1],
          ],
          4,
        ),
      ],
      [
        get('a', { end: '\0', maxModRevision: 4 }),
        R(
          6,
          [
            ['a', '3', 2, 2, 1],
            ['b', '4', 4, 4, 1],
          ],
          4,
        ),
      ],
      [
        get('a', { end: '\0', minCreateRevision: 3, maxCreateRevision: 4 }),
        R(
          6,
          [
            ['ab', '5', 3, 6, 2],
            ['b', '4', 4, 4, 1],
          ],
          4,
        ),
      ],
      [get('a', { end: '\0', minModRevision: 5, limit: 1 }), R(6, [['ab', '5', 3, 6, 2]], 4, true)],
      [
        get('a', { end: '\0', minModRevision: 6, limit: 1 }),
        R(6, [['ab', '5', 3, 6, 2]], 4, false),
      ],
      // etcd quirk: a target other than KEY with order NONE sorts ascending, but the limit is
      // applied first (limit+1 keys in key order are fetched), so only those get sorted.
      [
        get('a', { end: '\0', sortTarget: SortTarget.Value, limit: 2 }),
        R(
          6,
          [
            ['a', '3', 2, 2, 1],
            ['b', '4', 4, 4, 1],
          ],
          4,
          true,
        ),
      ],
      [get('a', { sortOrder: 9 as SortOrder }), E('INVALID_SORT_OPTION')],
    ],
  },
  {
    name: 'compaction keeps the latest version at or below the compact revision',
    steps: [
      [put('k', 'v1'), P(2)],
      [put('k', 'v2'), P(3)],
      [put('other', 'o'), P(4)],
      [put('k', 'v3'), P(5)],
      [del('other'), D(6, 1)],
      [compact(3), C(6)],
      [get('k', { revision: 2 }), E('COMPACTED')],
      [get('k', { revision: 3 }), R(6, [['k', 'v2', 2, 3, 2]])],
      [get('k', { revision: 4 }), R(6, [['k', 'v2', 2, 3, 2]])],
      [get('other', { revision: 4 }), R(6, [['other', 'o', 4, 4, 1]])],
      [get('k'), R(6, [['k', 'v3', 2, 5, 3]])],
      [get('k', { revision: 7 }), E('FUTURE_REV')],
      [compact(3), E('COMPACTED')],
      [compact(2), E('COMPACTED')],
      [compact(7), E('FUTURE_REV')],
      [compact(6), C(6)],
      [get('other', { revision: 6 }), R(6, [])],
      [get('a', { end: '\0' }), R(6, [['k', 'v3', 2, 5, 3]])],
      [put('k', 'v4'), P(7)],
      [get('k'), R(7, [['k', 'v4', 2, 7, 4]])],
      [get('k', { revision: 6 }), R(7, [['k', 'v3', 2, 5, 3]])],
    ],
  },
  {
    name: 'compaction at a tombstone forgets the key; a fresh store compacts at 1',
    steps: [
      [compact(1), C(1)],
      [compact(1), E('COMPACTED')],
      [put('x', '1'), P(2)],
      [del('x'), D(3, 1)],
      [compact(3), C(3)],
      [get('x', { revision: 3 }), R(3, [])],
      [put('x', '2'), P(4)],
      [get('x'), R(4, [['x', '2', 4, 4, 1]])],
    ],
  },
  {
    name: 'txn: compare-and-swap on value, version, create, mod',
    steps: [
      [put('k', '1'), P(2)],
      [
        txn({
          compare: [cmp('value', 'k', '=', '1')],
          success: [put('k', '2')],
          failure: [get('k')],
        }),
        T(3, true, [P(3)]),
      ],
      [
        txn({
          compare: [cmp('value', 'k', '=', '1')],
          success: [put('k', '3')],
          failure: [get('k')],
        }),
        T(3, false, [R(3, [['k', '2', 2, 3, 2]])]),
      ],
      [
        txn({
          compare: [
            cmp('version', 'k', '=', 2),
            cmp('mod', 'k', '=', 3),
            cmp('create', 'k', '=', 2),
          ],
          success: [del('k')],
        }),
        T(4, true, [D(4, 1)]),
      ],
      [
        txn({ compare: [cmp('version', 'k', '=', 0)], success: [put('k', 'new')] }),
        T(5, true, [P(5)]),
      ],
      [txn({ compare: [cmp('mod', 'k', '>', 5)], success: [put('k', 'no')] }), T(5, false, [])],
      [
        txn({
          compare: [
            cmp('mod', 'k', '<', 6),
            cmp('value', 'k', '!=', 'x'),
            cmp('value', 'k', '>', 'm'),
          ],
          success: [get('k')],
        }),
        T(5, true, [R(5, [['k', 'new', 5, 5, 1]])]),
      ],
    ],
  },
  {
    name: 'txn: compares against a missing key (etcd-verified for value)',
    steps: [
      [
        txn({ compare: [cmp('version', 'nope', '=', 0)], success: [get('nope')] }),
        T(1, true, [R(1, [])]),
      ],
      [
        txn({
          compare: [
            cmp('create', 'nope', '=', 0),
            cmp('mod', 'nope', '<', 1),
            cmp('lease', 'nope', '=', 0),
          ],
        }),
        T(1, true, []),
      ],
      [txn({ compare: [cmp('value', 'nope', '=', '')] }), T(1, false, [])],
      [txn({ compare: [cmp('value', 'nope', '!=', 'x')] }), T(1, false, [])],
    ],
  },
  {
    name: 'txn: range compares hold for every key in the range',
    steps: [
      [put('a1', 'x'), P(2)],
      [put('a2', 'x'), P(3)],
      [put('a3', 'y'), P(4)],
      [
        txn({ compare: [cmp('value', 'a1', '=', 'x', 'a3')], success: [put('r', '1')] }),
        T(5, true, [P(5)]),
      ],
      [
        txn({ compare: [cmp('value', 'a1', '=', 'x', 'a4')], success: [put('r', '2')] }),
        T(5, false, []),
      ],
      [txn({ compare: [cmp('version', 'a', '>', 0, '\0')] }), T(5, true, [])],
      [txn({ compare: [cmp('mod', 'a1', '<', 4, 'a9')] }), T(5, false, [])],
      [txn({ compare: [cmp('value', 'b', '=', 'x', 'c')] }), T(5, false, [])],
      [txn({ compare: [cmp('version', 'b', '=', 0, 'c')] }), T(5, true, [])],
    ],
  },
  {
    name: 'txn: one revision for all ops; later ops read earlier writes (etcd-verified)',
    steps: [
      [put('a', '0'), P(2)],
      [
        txn({
          success: [get('a'), put('a', '1'), put('b', '1'), get('a', { end: 'c' }), del('c')],
        }),
        T(3, true, [
          R(2, [['a', '0', 2, 2, 1]]),
          P(3),
          P(3),
          R(3, [
            ['a', '1', 2, 3, 2],
            ['b', '1', 3, 3, 1],
          ]),
          D(3, 0),
        ]),
      ],
      [
        get('a', { end: 'c' }),
        R(3, [
          ['a', '1', 2, 3, 2],
          ['b', '1', 3, 3, 1],
        ]),
      ],
      [
        txn({ success: [del('a', { end: 'c', prevKv: true })] }),
        T(4, true, [
          D(4, 2, [
            ['a', '1', 2, 3, 2],
            ['b', '1', 3, 3, 1],
          ]),
        ]),
      ],
    ],
  },
  {
    name: 'txn: a read-only txn or one whose writes are not taken keeps the revision',
    steps: [
      [put('a', '1'), P(2)],
      [txn({ success: [get('a')] }), T(2, true, [R(2, [['a', '1', 2, 2, 1]])])],
      [
        txn({
          compare: [cmp('value', 'a', '=', '2')],
          success: [put('a', '2')],
          failure: [get('a')],
        }),
        T(2, false, [R(2, [['a', '1', 2, 2, 1]])]),
      ],
      [txn({ success: [del('missing')] }), T(2, true, [D(2, 0)])],
      [put('b', '1'), P(3)],
    ],
  },
  {
    name: 'txn: nested compares see the state before the outer writes; nested headers are 0',
    steps: [
      [put('a', '1'), P(2)],
      [
        txn({
          success: [
            put('a', '2'),
            txn({
              compare: [cmp('value', 'a', '=', '1')],
              success: [put('b', 'x')],
              failure: [put('b', 'y')],
            }),
          ],
        }),
        T(3, true, [P(3), T(0, true, [P(3)])]),
      ],
      [get('b'), R(3, [['b', 'x', 3, 3, 1]])],
      [
        txn({
          compare: [cmp('value', 'a', '=', 'nope')],
          failure: [txn({ compare: [cmp('value', 'b', '=', 'x')], success: [get('b')] })],
        }),
        T(3, false, [T(0, true, [R(3, [['b', 'x', 3, 3, 1]])])]),
      ],
    ],
  },
  {
    name: 'txn: duplicate keys as etcd checkIntervals (etcd-verified for the top level)',
    steps: [
      [txn({ success: [put('a', '1'), put('a', '2')] }), E('DUPLICATE_KEY')],
      [txn({ success: [put('a', '1'), del('a')] }), E('DUPLICATE_KEY')],
      [txn({ success: [del('a', { end: 'c' }), put('b', '1')] }), E('DUPLICATE_KEY')],
      [txn({ success: [put('a', '1'), txn({ success: [put('a', '2')] })] }), E('DUPLICATE_KEY')],
      [txn({ success: [del('a'), txn({ success: [put('a', '1')] })] }), E('DUPLICATE_KEY')],
      [txn({ success: [txn({ success: [del('a')] }), put('a', '1')] }), E('DUPLICATE_KEY')],
      [
        txn({ success: [txn({ success: [put('a', '1')] }), txn({ failure: [put('a', '1')] })] }),
        E('DUPLICATE_KEY'),
      ],
      [txn({ success: [del('a', { end: 'c' }), del('b')] }), T(1, true, [D(1, 0), D(1, 0)])],
      [
        txn({ success: [txn({ success: [put('a', '1')], failure: [put('a', '2')] })] }),
        T(2, true, [T(0, true, [P(2)])]),
      ],
      [txn({ success: [put('a', '3')], failure: [put('a', '4')] }), T(3, true, [P(3)])],
      // etcd quirk: a from-key delete ("\0" end) is not seen as overlapping any put.
      [txn({ success: [del('a', { end: '\0' }), put('b', '5')] }), T(4, true, [D(4, 1), P(4)])],
    ],
  },
  {
    name: 'txn: at most 128 ops per level; nested txns share the budget',
    steps: [
      [
        txn({ success: puts(128) }),
        T(
          2,
          true,
          Array.from({ length: 128 }, () => P(2)),
        ),
      ],
      [txn({ success: puts(129) }), E('TOO_MANY_OPS')],
      [
        txn({ compare: Array.from({ length: 129 }, () => cmp('version', 'k0', '>', 0)) }),
        E('TOO_MANY_OPS'),
      ],
      [txn({ success: [...puts(99, 'x'), txn({ success: puts(29, 'y') })] }), E('TOO_MANY_OPS')],
      [
        txn({ success: [...puts(99, 'x'), txn({ success: puts(28, 'y') })] }),
        T(3, true, [
          ...Array.from({ length: 99 }, () => P(3)),
          T(
            0,
            true,
            Array.from({ length: 28 }, () => P(3)),
          ),
        ]),
      ],
    ],
  },
  {
    name: 'validation errors consume no revision',
    steps: [
      [put('', 'v'), E('EMPTY_KEY')],
      [get(''), E('EMPTY_KEY')],
      [del(''), E('EMPTY_KEY')],
      [txn({ compare: [cmp('value', '', '=', 'x')] }), E('EMPTY_KEY')],
      [txn({ success: [txn({ failure: [put('', 'v')] })] }), E('EMPTY_KEY')],
      [put('k', 'v', { ignoreValue: true }), E('VALUE_PROVIDED')],
      [put('k', '', { ignoreLease: true, lease: 5n }), E('LEASE_PROVIDED')],
      [put('k', '', { ignoreValue: true }), E('KEY_NOT_FOUND')],
      [put('k', 'v', { ignoreLease: true }), E('KEY_NOT_FOUND')],
      [txn({ success: [put('k', '', { ignoreValue: true })] }), E('KEY_NOT_FOUND')],
      [put('k', 'v'), P(2)],
    ],
  },
  {
    name: 'leases: attach, ignore_lease, ignore_value, lease compare, missing lease',
    leases: [5n],
    steps: [
      [put('k', 'v', { lease: 99n }), E('LEASE_NOT_FOUND')],
      [put('k', 'v', { lease: 5n }), P(2)],
      [get('k'), R(2, [['k', 'v', 2, 2, 1, 5]])],
      [put('k', '', { ignoreValue: true }), P(3)],
      [get('k'), R(3, [['k', 'v', 2, 3, 2]])],
      [put('k', 'v2', { lease: 5n }), P(4)],
      [put('k', 'v3', { ignoreLease: true, prevKv: true }), P(5, ['k', 'v2', 2, 4, 3, 5])],
      [get('k'), R(5, [['k', 'v3', 2, 5, 4, 5]])],
      [
        txn({ compare: [cmp('lease', 'k', '=', 5)], success: [put('j', '1', { lease: 5n })] }),
        T(6, true, [P(6)]),
      ],
      [txn({ success: [put('i', '1', { lease: 99n })] }), E('LEASE_NOT_FOUND')],
      // Standalone put checks the lease first; inside a txn the missing key comes first.
      [put('missing', '', { ignoreValue: true, lease: 99n }), E('LEASE_NOT_FOUND')],
      [
        txn({ success: [put('missing', '', { ignoreValue: true, lease: 99n })] }),
        E('KEY_NOT_FOUND'),
      ],
      [del('j'), D(7, 1)],
    ],
    after: (_sm, lessor) => assert.deepEqual(lessor.keys(5n), ['k']),
  },
  {
    name: 'txn: range errors on the taken path fail the whole txn before any write',
    steps: [
      [put('a', '1'), P(2)],
      [put('a', '2'), P(3)],
      [compact(3), C(3)],
      [txn({ success: [put('b', '1'), get('a', { revision: 2 })] }), E('COMPACTED')],
      [get('b'), R(3, [])],
      [txn({ success: [put('b', '1'), get('a', { revision: 4 })] }), E('FUTURE_REV')],
      [
        txn({
          compare: [cmp('value', 'a', '=', 'no')],
          success: [get('a', { revision: 4 })],
          failure: [get('a', { revision: 3 })],
        }),
        T(3, false, [R(3, [['a', '2', 2, 3, 2]])]),
      ],
    ],
  },
];

/** A local read as printResult prints the applied one: its response, or its error code. */
function readLocally(read: () => TxnResponse): Printed {
  try {
    return printResponse({ type: 'txn', response: read() });
  } catch (error) {
    if (error instanceof KvError) return { error: error.code };
    throw error;
  }
}

describe('etcd KV conformance', () => {
  const hashes = new Map<string, number[]>();
  let readOnlyTxns = 0;
  for (const kind of BACKENDS) {
    describe(kind.name, () => {
      for (const c of CASES) {
        test(c.name, async () => {
          const { backend, reopen, cleanup } = kind.create();
          try {
            const lessor = new FakeLessor();
            for (const id of c.leases ?? []) lessor.grant(id);
            const sm = KvStateMachine.open(backend, { lessor });
            c.steps.forEach(([req, want], i) => {
              // A read-only txn read locally (never through the log) answers as applying it.
              if (req.type === 'txn' && isReadOnlyTxn(req.request)) {
                readOnlyTxns++;
                const local = readLocally(() => sm.readTxn(req.request));
                assert.deepEqual(local, want, `step ${i}, read locally: ${JSON.stringify(local)}`);
              }
              const got = printResult(sm.apply(i + 1, encodeCommand(req)));
              assert.deepEqual(got, want, `step ${i}: ${JSON.stringify(got)}`);
            });
            c.after?.(sm, lessor);
            const h = sm.hash();
            hashes.set(c.name, [...(hashes.get(c.name) ?? []), h.hash]);
            if (kind.name === 'lmdb') {
              await backend.close();
              const again = KvStateMachine.open(reopen(), { lessor: new FakeLessor() });
              assert.deepEqual(again.hash(), h, 'reopened store has the same history');
              assert.equal(again.appliedIndex(), c.steps.length);
            }
          } finally {
            await cleanup();
          }
        });
      }
    });
  }
  test('read-only txns were read locally too', () => {
    assert.ok(readOnlyTxns >= 4, `only ${readOnlyTxns} read-only txns among the cases`);
  });
  test('both backends end every case with the same hashKv', () => {
    assert.equal(hashes.size, CASES.length);
    for (const [name, hs] of hashes) {
      assert.equal(hs.length, BACKENDS.length, name);
      assert.ok(
        hs.every((h) => h === hs[0]),
        `${name}: backends disagree on the hash`,
      );
    }
  });
});
