/**
 * etcd's alarms and quota as tandem replicates them: the pure AlarmSet and quota costs, and the
 * state machine's NOSPACE cap (etcd's applierV3Capped), carried by snapshots and reopens.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  compactionRequest,
  deleteRangeRequest,
  type KvRequest,
  op,
  putRequest,
  rangeRequest,
  txnRequest,
} from '../../src/kv/api-types.js';
import { LmdbBackend } from '../../src/kv/backend/lmdb.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import {
  QUOTA_KV_OVERHEAD_BYTES,
  QUOTA_LEASE_OVERHEAD_BYTES,
  quotaAvailable,
  quotaCostBytes,
} from '../../src/kv/quota.js';
import {
  AlarmAction,
  AlarmSet,
  AlarmType,
  alarmStatusText,
  decodeAlarmPayload,
  encodeAlarmPayload,
} from '../../src/server/alarms.js';
import {
  type CommandResult,
  encodeAlarm,
  encodeLeaseGrant,
  TandemStateMachine,
} from '../../src/server/tandem-state-machine.js';

const b = (s: string) => new TextEncoder().encode(s);
const founders = [{ id: 1, name: 'n1', peerUrls: ['127.0.0.1:2380'], clientUrls: [] }];
const MEMBER = 0xf00dbabe12345678n;

describe('AlarmSet (etcd v3alarm.AlarmStore)', () => {
  test('activate returns the raised alarm, the existing one when raised twice; NONE raises none', () => {
    const set = new AlarmSet();
    const raised = set.activate(MEMBER, AlarmType.NoSpace);
    assert.deepEqual(raised, { memberId: MEMBER, alarm: AlarmType.NoSpace });
    assert.equal(set.activate(MEMBER, AlarmType.NoSpace), raised);
    assert.equal(set.activate(MEMBER, AlarmType.None), null);
    set.activate(2n, AlarmType.Corrupt);
    assert.equal(set.list().length, 2);
    assert.deepEqual(set.list(AlarmType.NoSpace), [raised]);
    assert.equal(set.has(AlarmType.NoSpace), true);
    assert.deepEqual(set.deactivate(MEMBER, AlarmType.NoSpace), raised);
    assert.equal(set.deactivate(MEMBER, AlarmType.NoSpace), null, 'cleared twice: nothing');
    assert.equal(set.has(AlarmType.NoSpace), false);
    assert.equal(alarmStatusText(raised!), `memberID:${MEMBER} alarm:NOSPACE `);
  });

  test('encode is the same bytes for the same set, whatever the order of activation', () => {
    const change = fc.record({
      on: fc.boolean(),
      id: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      alarm: fc.constantFrom(AlarmType.NoSpace, AlarmType.Corrupt),
    });
    fc.assert(
      fc.property(fc.array(change, { maxLength: 30 }), (changes) => {
        const set = new AlarmSet();
        for (const c of changes) {
          if (c.on) set.activate(c.id, c.alarm);
          else set.deactivate(c.id, c.alarm);
        }
        const reversed = new AlarmSet();
        for (const m of [...set.list()].reverse()) reversed.activate(m.memberId, m.alarm);
        assert.deepEqual(reversed.encode(), set.encode());
        assert.deepEqual(AlarmSet.decode(set.encode()).list(), set.list());
      }),
    );
  });

  test('a malformed alarm payload decodes to null (the same no-op on every member)', () => {
    const good = encodeAlarmPayload(AlarmAction.Activate, MEMBER, AlarmType.NoSpace);
    assert.deepEqual(decodeAlarmPayload(good), {
      action: AlarmAction.Activate,
      memberId: MEMBER,
      alarm: AlarmType.NoSpace,
    });
    assert.equal(decodeAlarmPayload(new Uint8Array([0xc1])), null);
    assert.equal(decodeAlarmPayload(encodeAlarmPayload(7 as AlarmAction, 1n, 1)), null);
    assert.equal(decodeAlarmPayload(encodeAlarmPayload(1, 1n, 9 as AlarmType)), null);
  });
});

describe('quota (etcd storage/quota.go)', () => {
  test("costs are etcd's: puts, the larger txn branch, lease grants; reads and deletes free", () => {
    const put: KvRequest = { type: 'put', request: putRequest({ key: b('k'), value: b('vv') }) };
    assert.equal(quotaCostBytes(put), QUOTA_KV_OVERHEAD_BYTES + 3);
    const txn: KvRequest = {
      type: 'txn',
      request: txnRequest({
        success: [op.put(putRequest({ key: b('a'), value: b('1') }))],
        failure: [
          op.put(putRequest({ key: b('b'), value: b('22') })),
          op.txn(txnRequest({ success: [op.put(putRequest({ key: b('c') }))] })),
        ],
      }),
    };
    assert.equal(quotaCostBytes(txn), 2 * QUOTA_KV_OVERHEAD_BYTES + 3 + 1);
    const deletes: KvRequest = {
      type: 'txn',
      request: txnRequest({ success: [op.deleteRange(deleteRangeRequest({ key: b('a') }))] }),
    };
    assert.equal(quotaCostBytes(deletes), 0);
    assert.equal(
      quotaCostBytes({ type: 'deleteRange', request: deleteRangeRequest({ key: b('a') }) }),
      0,
    );
    assert.equal(quotaCostBytes({ type: 'compaction', request: compactionRequest(1) }), 0);
    assert.equal(quotaCostBytes({ type: 'leaseGrant' }), QUOTA_LEASE_OVERHEAD_BYTES);
  });

  test('available while size + cost stays below the quota; a free request always', () => {
    assert.equal(quotaAvailable(100, 10, 111), true);
    assert.equal(quotaAvailable(100, 11, 111), false, 'reaching the quota is over it (etcd: <)');
    assert.equal(quotaAvailable(1_000, 0, 10), true);
  });
});

function machine(backend = new MemoryBackend()) {
  return new TandemStateMachine({ backend, founders, nowMs: () => 0 });
}

/** Applies one command after another at consecutive indexes. */
function applier(sm: TandemStateMachine) {
  let index = 1;
  return (command: Uint8Array): CommandResult => sm.apply({ index: ++index, term: 1 }, command);
}

const kv = (sm: TandemStateMachine, req: KvRequest) => sm.encodeKv(req);
const putK = (key: string): KvRequest => ({
  type: 'put',
  request: putRequest({ key: b(key), value: b('v') }),
});
const noSpace = (r: CommandResult) =>
  r.kind === 'rejected' && r.error.message === 'etcdserver: mvcc: database space exceeded';

describe('the NOSPACE cap in the replicated state machine', () => {
  test('growing writes refused, the rest applied; DEACTIVATE lifts the cap', () => {
    const sm = machine();
    const apply = applier(sm);
    assert.equal(apply(kv(sm, putK('a'))).kind, 'applied');
    const raised = apply(encodeAlarm(AlarmAction.Activate, MEMBER, AlarmType.NoSpace));
    assert.deepEqual(raised, {
      kind: 'alarm',
      alarms: [{ memberId: MEMBER, alarm: AlarmType.NoSpace }],
    });
    assert.deepEqual(sm.alarms(), [{ memberId: MEMBER, alarm: AlarmType.NoSpace }]);
    const revision = sm.revision();
    assert.ok(noSpace(apply(kv(sm, putK('b')))), 'put refused');
    const txnPut = kv(sm, {
      type: 'txn',
      request: txnRequest({ success: [op.put(putRequest({ key: b('c') }))] }),
    });
    assert.ok(noSpace(apply(txnPut)), 'txn with a put refused');
    assert.ok(noSpace(apply(encodeLeaseGrant(5n, 60))), 'lease grant refused');
    assert.equal(sm.revision(), revision, 'nothing written');
    assert.equal(sm.lessor.exists(5n), false);
    const deleted = apply(
      kv(sm, { type: 'deleteRange', request: deleteRangeRequest({ key: b('a') }) }),
    );
    assert.equal(deleted.kind, 'applied', 'deletes go on');
    const compacted = apply(
      kv(sm, { type: 'compaction', request: compactionRequest(sm.revision()) }),
    );
    assert.equal(compacted.kind, 'applied', 'compaction goes on');
    const cleared = apply(encodeAlarm(AlarmAction.Deactivate, MEMBER, AlarmType.NoSpace));
    assert.deepEqual(cleared, {
      kind: 'alarm',
      alarms: [{ memberId: MEMBER, alarm: AlarmType.NoSpace }],
    });
    assert.deepEqual(apply(encodeAlarm(AlarmAction.Deactivate, MEMBER, AlarmType.NoSpace)), {
      kind: 'alarm',
      alarms: [],
    });
    assert.equal(apply(kv(sm, putK('d'))).kind, 'applied', 'writes again once disarmed');
    assert.equal(sm.range(rangeRequest({ key: b('d') })).count, 1);
  });

  test('a CORRUPT alarm is listed but caps nothing (tandem enforces NOSPACE only)', () => {
    const sm = machine();
    const apply = applier(sm);
    apply(encodeAlarm(AlarmAction.Activate, 3n, AlarmType.Corrupt));
    assert.equal(sm.alarms(AlarmType.Corrupt).length, 1);
    assert.equal(apply(kv(sm, putK('a'))).kind, 'applied');
  });

  test('the alarm travels in snapshots and survives a reopen of the store', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-alarms-'));
    try {
      const backend = new LmdbBackend({ path: dir });
      const a = machine(backend as unknown as MemoryBackend);
      const apply = applier(a);
      apply(kv(a, putK('a')));
      apply(encodeAlarm(AlarmAction.Activate, MEMBER, AlarmType.NoSpace));
      const other = machine();
      other.restore({
        metadata: {
          index: a.appliedIndex(),
          term: 1,
          confState: {
            voters: [1],
            learners: [],
            votersOutgoing: [],
            learnersNext: [],
            autoLeave: false,
          },
        },
        data: a.snapshot(),
      });
      assert.deepEqual(other.alarms(), a.alarms());
      const capped = other.apply({ index: a.appliedIndex() + 1, term: 1 }, kv(other, putK('b')));
      assert.ok(noSpace(capped), 'the restored member is capped too');
      const reopened = machine(backend as unknown as MemoryBackend);
      assert.deepEqual(reopened.alarms(), a.alarms());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
