/**
 * bench/scale.ts (npm run bench:scale): its protobuf read back by rpc.proto (a Txn of puts, a
 * watch create, a watch response and a put response encoded by the server's definitions), its
 * small parsers, and the whole harness run tiny against real etcd and tandem (2,048 keys, 100
 * watchers, snapshots every 500 entries), its JSON output checked figure by figure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { encodeTxnPuts, PUTS_PER_TXN_MAX } from '../../bench/load.js';
import { metricSum, parsePlan, runDeadlineMs } from '../../bench/scale.js';
import {
  decodeWatchResponse,
  encodeWatchCreate,
  responseRevision,
  stampOf,
  stampValue,
} from '../../bench/watchers.js';
import { serviceDefinition } from '../../src/api/proto.js';
import { REPO_DIR } from '../../src/cli/local-cluster.js';
import { ETCDCTL_MISSING } from '../integration/clients.js';
import { ETCD_MISSING } from '../integration/real-etcd-single.js';

const kv = serviceDefinition('kv');
const watch = serviceDefinition('watch');
const header = { clusterId: '1', memberId: '2', revision: 2 ** 40 + 7, raftTerm: 3 };

describe('bench:scale protobuf, read back by rpc.proto', () => {
  test('TxnRequest of puts: no compares, one request_put per key, in order', () => {
    const keys = Array.from({ length: PUTS_PER_TXN_MAX }, (_, i) => Buffer.from(`s/0/${i}`));
    const value = Buffer.alloc(256, 9);
    const txn = kv.Txn!.requestDeserialize(encodeTxnPuts(keys, value)) as {
      compare: unknown[];
      success: { request: string; requestPut: { key: Buffer; value: Buffer } }[];
      failure: unknown[];
    };
    assert.equal(txn.compare.length, 0);
    assert.equal(txn.failure.length, 0);
    assert.equal(txn.success.length, PUTS_PER_TXN_MAX);
    txn.success.forEach((op, i) => {
      assert.equal(op.request, 'requestPut');
      assert.deepEqual(op.requestPut.key, keys[i]);
      assert.deepEqual(op.requestPut.value, value);
    });
    assert.throws(() => encodeTxnPuts([], value), /1\.\.128 keys/);
    assert.throws(() => encodeTxnPuts([...keys, Buffer.from('x')], value), /1\.\.128 keys/);
  });

  test('WatchRequest: a create request on exactly the key', () => {
    const key = Buffer.from('scale/abc/watched');
    const request = watch.Watch!.requestDeserialize(encodeWatchCreate(key)) as {
      requestUnion: string;
      createRequest: { key: Buffer; rangeEnd: Buffer; startRevision: string };
    };
    assert.equal(request.requestUnion, 'createRequest');
    assert.deepEqual(request.createRequest.key, key);
    assert.equal(request.createRequest.rangeEnd.length, 0);
    assert.equal(request.createRequest.startRevision, '0');
  });

  test('WatchResponse: created, canceled with its reason, events with revision and value', () => {
    const created = decodeWatchResponse(
      watch.Watch!.responseSerialize({ header, watchId: 5, created: true, events: [] }),
    );
    assert.deepEqual(created, {
      watchId: 5,
      created: true,
      canceled: false,
      cancelReason: '',
      events: [],
    });
    const canceled = decodeWatchResponse(
      watch.Watch!.responseSerialize({ header, watchId: 6, canceled: true, cancelReason: 'no' }),
    );
    assert.equal(canceled.canceled, true);
    assert.equal(canceled.cancelReason, 'no');
    const value = stampValue(256, 1234.5);
    const kvOf = (rev: number) => ({
      key: Buffer.from('k'),
      createRevision: 2,
      modRevision: rev,
      version: 1,
      value,
    });
    const events = decodeWatchResponse(
      watch.Watch!.responseSerialize({
        header,
        watchId: 5,
        events: [
          { type: 0, kv: kvOf(2 ** 40) },
          { type: 0, kv: kvOf(2 ** 40 + 1) },
        ],
      }),
    ).events;
    assert.deepEqual(
      events.map((e) => e.modRevision),
      [2 ** 40, 2 ** 40 + 1],
    );
    assert.equal(stampOf(events[1]!.value), 1234.5);
  });

  test('PutResponse: the header revision', () => {
    assert.equal(responseRevision(kv.Put!.responseSerialize({ header })), 2 ** 40 + 7);
  });
});

describe('bench:scale parsing', () => {
  test('stamped values: the send time first, padded to the size', () => {
    const value = stampValue(256, 1_700_000_000_123.25);
    assert.equal(value.length, 256);
    assert.equal(stampOf(value), 1_700_000_000_123.25);
    assert.ok(Number.isNaN(stampOf(Buffer.from('no-stamp'))));
  });

  test('metricSum: summed over label sets, exact name only, null when absent', () => {
    const text = [
      '# TYPE etcd_network_snapshot_receive_success counter',
      'etcd_network_snapshot_receive_success{From="a"} 1',
      'etcd_network_snapshot_receive_success{From="b"} 2',
      'etcd_network_snapshot_receive_success_total 40',
      'etcd_mvcc_db_total_size_in_bytes 4.5e+06',
    ].join('\n');
    assert.equal(metricSum(text, 'etcd_network_snapshot_receive_success'), 3);
    assert.equal(metricSum(text, 'etcd_mvcc_db_total_size_in_bytes'), 4_500_000);
    assert.equal(metricSum(text, 'etcd_absent'), null);
  });

  test('flags: bounded, named in the error; the deadline grows with the keys', () => {
    const plan = parsePlan(['--keys', '2000', '--watchers', '100', '--suites', 'tandem']);
    assert.equal(plan.keys, 2000);
    assert.deepEqual(plan.suites, ['tandem']);
    assert.throws(() => parsePlan(['--keys', '0']), /--keys must be an integer 128\.\./);
    assert.throws(() => parsePlan(['--watchers', '1e9']), /--watchers must be/);
    assert.throws(() => parsePlan(['--phases', 'keys,nope']), /unknown phase 'nope'/);
    assert.throws(() => parsePlan(['--snapshot-entries', '10']), /--snapshot-entries/);
    assert.ok(runDeadlineMs(parsePlan(['--keys', '1000000'])) > runDeadlineMs(plan));
  });
});

const SKIP = ETCD_MISSING || ETCDCTL_MISSING;
/** The tiny run: about 3 to 5 minutes on a loaded 2-core machine (clusters started 3 times). */
const RUN_TIMEOUT_MS = 12 * 60_000;

interface ScaleJson {
  keys: {
    system: string;
    keysLoaded: number;
    putEmpty: { opsPerSec: number; errors: number };
    putLoaded: { opsPerSec: number; errors: number };
    putLoadedOverEmpty: number;
    memory: { rssEmptyKiB: number; rssLoadedKiB: number }[];
    restartToServingMs: number;
    join: { bySnapshot: boolean; snapshotBytes: number | null; catchUpMs: number };
  }[];
  watch: {
    system: string;
    watchers: number;
    puts: number;
    events: number;
    eventsExpected: number;
    eventsMinPerWatcher: number;
    failedWatchers: number;
    lagP99Ms: number;
    slowestWatcherLagMs: number;
  }[];
  voters: { system: string; voters: number; put: { opsPerSec: number } }[];
  failures: string[];
}

describe('bench:scale, run tiny against etcd and tandem', { skip: SKIP }, () => {
  test('every phase produces its figures', { timeout: RUN_TIMEOUT_MS + 30_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'tandem-scale-test-'));
    try {
      const args = [
        '--import',
        'tsx',
        'bench/scale.ts',
        ...['--keys', '2000', '--watchers', '100', '--watch-rate', '20', '--watch-ms', '1000'],
        ...['--cell-ms', '500', '--put-rounds', '1', '--snapshot-entries', '500'],
        ...['--generators', '1', '--out', out],
      ];
      const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
        (resolve) => {
          execFile(
            process.execPath,
            args,
            { cwd: REPO_DIR, timeout: RUN_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
            (error, stdout, stderr) =>
              resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr }),
          );
        },
      );
      const json = JSON.parse(readFileSync(join(out, 'scale-latest.json'), 'utf8')) as ScaleJson;
      assert.deepEqual(json.failures, [], run.stderr);
      assert.equal(run.code, 0, run.stderr);
      for (const system of ['etcd', 'tandem']) {
        const k = json.keys.find((r) => r.system === system);
        assert.ok(k !== undefined, `${system}: keys figures`);
        assert.equal(k.keysLoaded, 2048, 'ceil(2000 / 128) Txns of 128 puts');
        assert.ok(k.putEmpty.opsPerSec > 0 && k.putLoaded.opsPerSec > 0);
        assert.equal(k.putEmpty.errors + k.putLoaded.errors, 0);
        assert.ok(k.putLoadedOverEmpty > 0);
        assert.equal(k.memory.length, 3);
        for (const m of k.memory) assert.ok(m.rssEmptyKiB > 0 && m.rssLoadedKiB > 0);
        assert.ok(k.restartToServingMs > 0);
        assert.equal(k.join.bySnapshot, true, `${system}: the joiner received a snapshot`);
        assert.ok((k.join.snapshotBytes ?? 0) > 0 && k.join.catchUpMs > 0);

        const w = json.watch.find((r) => r.system === system);
        assert.ok(w !== undefined, `${system}: watch figures`);
        assert.equal(w.watchers, 100);
        assert.equal(w.failedWatchers, 0);
        assert.ok(w.puts >= 1);
        assert.equal(w.eventsExpected, w.puts * 100);
        assert.equal(w.events, w.eventsExpected, `${system}: every watcher got every put`);
        assert.equal(w.eventsMinPerWatcher, w.puts);
        assert.ok(w.lagP99Ms > 0 && w.slowestWatcherLagMs >= w.lagP99Ms);

        for (const voters of [3, 5]) {
          const v = json.voters.find((r) => r.system === system && r.voters === voters);
          assert.ok(v !== undefined && v.put.opsPerSec > 0, `${system}: ${voters} voters`);
        }
      }
      const md = readFileSync(join(out, 'scale-latest.md'), 'utf8');
      assert.match(md, /## 2,048 keys of 256 bytes \(3 members\)/);
      assert.match(md, /## 100 watchers on one key/);
      assert.match(md, /## 5 voters against 3/);
      assert.match(md, /\| restart \(kill -9\) to serving, ms \| [\d,]+ \| [\d,]+ \|/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
