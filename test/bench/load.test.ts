/**
 * The benchmarks' hand-written protobuf (bench/load.ts) read back by the same protobuf
 * definitions the server uses (proto/rpc.proto through @grpc/proto-loader), and the bench's
 * event-loop quantile from histogram deltas (bench/member-metrics.ts). A wrong field number or
 * wire type here would make the bench measure errors, or the wrong request, on both systems.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { split } from '../../bench/generators.js';
import {
  countRangeKvs,
  decodeTxnRead,
  encodePut,
  encodeRange,
  encodeTxnRead,
  intIn,
} from '../../bench/load.js';
import {
  loopDelayQuantile,
  type MemberScrape,
  parseMemberScrape,
} from '../../bench/member-metrics.js';
import { mainThreadSched, parseSchedstat } from '../../bench/procs.js';
import { serviceDefinition } from '../../src/api/proto.js';

const kv = serviceDefinition('kv');
const decodeRequest = (method: string, bytes: Buffer): Record<string, unknown> =>
  kv[method]!.requestDeserialize(bytes) as Record<string, unknown>;
const encodeResponse = (method: string, message: unknown): Buffer =>
  kv[method]!.responseSerialize(message);

const KEY = Buffer.from('bench/run/seed/42');

describe('bench protobuf, read back by rpc.proto', () => {
  test('PutRequest: key and value', () => {
    const value = Buffer.alloc(300, 7); // a two-byte length
    const put = decodeRequest('Put', encodePut(KEY, value));
    assert.deepEqual(put.key, KEY);
    assert.deepEqual(put.value, value);
  });

  test('RangeRequest: one key, linearizable unless serializable', () => {
    const linearizable = decodeRequest('Range', encodeRange(KEY));
    assert.deepEqual(linearizable.key, KEY);
    assert.equal(linearizable.serializable, false);
    assert.equal((linearizable.rangeEnd as Buffer).length, 0);
    const serializable = decodeRequest('Range', encodeRange(KEY, true));
    assert.deepEqual(serializable.key, KEY);
    assert.equal(serializable.serializable, true);
  });

  test('TxnRequest: compare mod_revision(key) > 0, success a linearizable Range of the key', () => {
    const txn = decodeRequest('Txn', encodeTxnRead(KEY)) as {
      compare: Record<string, unknown>[];
      success: { request: string; requestRange: Record<string, unknown> }[];
      failure: unknown[];
    };
    assert.equal(txn.compare.length, 1);
    const compare = txn.compare[0]!;
    assert.equal(compare.result, 1, 'GREATER');
    assert.equal(compare.target, 2, 'MOD');
    assert.deepEqual(compare.key, KEY);
    assert.equal(compare.targetUnion, 'modRevision', 'the oneof member is present');
    assert.equal(compare.modRevision, '0');
    assert.equal(txn.success.length, 1);
    assert.equal(txn.success[0]!.request, 'requestRange');
    assert.deepEqual(txn.success[0]!.requestRange.key, KEY);
    assert.equal(txn.success[0]!.requestRange.serializable, false);
    assert.equal(txn.failure.length, 0);
  });

  const kvOf = (i: number) => ({
    key: Buffer.from(`k${i}`),
    createRevision: 5,
    modRevision: 2 ** 40, // a long varint
    version: 1,
    value: Buffer.alloc(256, i),
  });
  const header = { clusterId: '1', memberId: '2', revision: 2 ** 40, raftTerm: 3 };

  test('RangeResponse: kvs counted', () => {
    for (const n of [0, 1, 3]) {
      const kvs = Array.from({ length: n }, (_, i) => kvOf(i));
      const bytes = encodeResponse('Range', { header, kvs, more: false, count: n });
      assert.equal(countRangeKvs(bytes), n);
    }
  });

  test('TxnResponse: succeeded and the success Range kvs', () => {
    const hit = encodeResponse('Txn', {
      header,
      succeeded: true,
      responses: [{ responseRange: { header, kvs: [kvOf(1)], count: 1 } }],
    });
    assert.deepEqual(decodeTxnRead(hit), { succeeded: true, rangeKvs: [1] });
    const miss = encodeResponse('Txn', { header, succeeded: false, responses: [] });
    assert.deepEqual(decodeTxnRead(miss), { succeeded: false, rangeKvs: [] });
    assert.throws(() => decodeTxnRead(hit.subarray(0, hit.length - 3)), /past the end/);
  });
});

describe('bench event-loop quantile from two scrapes', () => {
  const text = (counts: readonly number[]): string => {
    const les = ['0.001', '0.005', '0.01', '0.05', '+Inf'];
    const lines = les.map(
      (le, i) => `tandem_event_loop_delay_seconds_bucket{le="${le}"} ${counts[i]}`,
    );
    return `# TYPE tandem_event_loop_delay_seconds histogram\n${lines.join('\n')}\ntandem_raft_is_leader 1\n`;
  };

  test('p99 of the delta, interpolated within its bucket; beyond the last bound; no samples', () => {
    const before: MemberScrape = parseMemberScrape(text([10, 10, 10, 10, 10]));
    assert.equal(before.isLeader, true);
    // 100 new samples: 90 ≤ 1 ms, 8 in (5, 10] ms, 2 in (10, 50] ms. p99: rank 99 is the first
    // of the 2 in (10, 50]: 10 + 40 × (99 - 98) / 2 = 30 ms.
    const after = parseMemberScrape(text([100, 100, 108, 110, 110]));
    const d = loopDelayQuantile(before, after, 0.99);
    assert.equal(d.samples, 100);
    assert.equal(d.beyondLastBound, false);
    assert.ok(Math.abs(d.quantileMs! - 30) < 1e-9, String(d.quantileMs));
    const slow = parseMemberScrape(text([10, 10, 10, 10, 20]));
    assert.deepEqual(loopDelayQuantile(before, slow, 0.99), {
      samples: 10,
      quantileMs: 50,
      beyondLastBound: true,
    });
    assert.equal(loopDelayQuantile(before, before, 0.99).quantileMs, null);
  });
});

test('generators: in-flight shares add up, larger first', () => {
  assert.deepEqual(split(64, 2), [32, 32]);
  assert.deepEqual(split(7, 3), [3, 2, 2]);
  assert.deepEqual(split(1, 2), [1, 0]);
  for (let total = 0; total < 50; total++) {
    for (let parts = 1; parts < 9; parts++) {
      const shares = split(total, parts);
      assert.equal(
        shares.reduce((a, b) => a + b, 0),
        total,
      );
      assert.ok(Math.max(...shares) - Math.min(...shares) <= 1);
    }
  }
});

test('schedstat: time on a CPU first, runqueue wait second, both in ms', (t) => {
  assert.deepEqual(parseSchedstat('1500000 2500000 7\n'), { runMs: 1.5, waitMs: 2.5 });
  assert.throws(() => parseSchedstat('garbage'), /not a schedstat line/);
  assert.equal(mainThreadSched(null), null);
  if (!existsSync(`/proc/${process.pid}/task/${process.pid}/schedstat`)) {
    t.skip('no /proc/<pid>/task/<tid>/schedstat on this system (Linux with schedstats)');
    return;
  }
  const self = mainThreadSched(process.pid);
  assert.ok(self !== null, "the main thread's schedstat is read");
  // A spinning thread never sleeps: all of its wall time is either on a CPU or waiting for one
  // (on a busy machine mostly the latter). Stats of a running task may lag by a scheduler tick.
  const startMs = performance.now();
  while (performance.now() - startMs < 60);
  const wallMs = performance.now() - startMs;
  const after = mainThreadSched(process.pid)!;
  const accounted = after.runMs - self.runMs + (after.waitMs - self.waitMs);
  assert.ok(accounted >= wallMs - 10, `run + wait ${accounted} ms of a ${wallMs} ms spin`);
  assert.ok(after.runMs > self.runMs, 'some of it on a CPU');
});

test('intIn takes an integer in 1..max and names the flag otherwise', () => {
  assert.equal(intIn('--puts', '2000', 100_000), 2000);
  assert.equal(intIn('--puts', '1', 1), 1);
  for (const bad of ['0', '-3', '1.5', 'x', '', '100001']) {
    assert.throws(() => intIn('--puts', bad, 100_000), /--puts must be an integer in 1\.\.100000/);
  }
});
