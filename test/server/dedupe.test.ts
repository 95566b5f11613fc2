/**
 * Request ids in the replicated state machine (src/server/dedupe.ts): a write applied once per
 * id, a retry answered with the first result; the table bounded by count and by log entries,
 * durable in the meta bucket, carried by snapshots, the same on every member.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CompareResult,
  CompareTarget,
  compare,
  deleteRangeRequest,
  op,
  putRequest,
  rangeRequest,
  txnRequest,
} from '../../src/kv/api-types.js';
import type { AuthOp } from '../../src/kv/auth/index.js';
import type { Backend } from '../../src/kv/backend/backend.js';
import { LmdbBackend } from '../../src/kv/backend/lmdb.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import { decodeDedupedPayload, encodeDedupedPayload } from '../../src/server/dedupe.js';
import {
  type CommandResult,
  encodeAuth,
  encodeAuthorized,
  encodeDeduped,
  TandemStateMachine,
} from '../../src/server/tandem-state-machine.js';

const b = (s: string) => new TextEncoder().encode(s);
const founders = [{ id: 1, name: 'n1', peerUrls: ['127.0.0.1:2380'], clientUrls: [] }];
const CONF_STATE = {
  voters: [1],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};

function machine(
  backend: Backend = new MemoryBackend(),
  dedupe?: {
    recordsMax?: number;
    windowEntries?: number;
    answerBytesMax?: number;
    bytesMax?: number;
  },
) {
  return new TandemStateMachine({
    backend,
    founders,
    nowMs: () => 0,
    ...(dedupe === undefined ? {} : { dedupe }),
  });
}

function putCmd(sm: TandemStateMachine, key: string, value = 'v', prevKv = false): Uint8Array {
  return sm.encodeKv({
    type: 'put',
    request: putRequest({ key: b(key), value: b(value), prevKv }),
  });
}

function revisionOf(r: CommandResult): number {
  assert.equal(r.kind, 'applied', show(r));
  return (r as { response: { response: { header: { revision: number } } } }).response.response
    .header.revision;
}

function show(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

/** A result as text, bytes as arrays (the table gives back Buffers for Uint8Arrays). */
function plain(v: unknown): string {
  const walk = (x: unknown): unknown => {
    if (x instanceof Uint8Array) return Array.from(x);
    if (typeof x === 'bigint') return `${x}n`;
    if (Array.isArray(x)) return x.map(walk);
    if (x !== null && typeof x === 'object') {
      return Object.fromEntries(
        Object.entries(x)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([k, y]) => [k, walk(y)]),
      );
    }
    return x;
  };
  return JSON.stringify(walk(v));
}

function versionOf(sm: TandemStateMachine, key: string): number {
  return sm.range(rangeRequest({ key: b(key) })).kvs[0]?.version ?? 0;
}

test('the deduped payload round-trips; a malformed one decodes to null', () => {
  const inner = new Uint8Array([1, 9, 9]);
  const p = encodeDedupedPayload('client-7:42', inner);
  assert.deepEqual(decodeDedupedPayload(p), { requestId: 'client-7:42', command: inner });
  assert.equal(decodeDedupedPayload(new Uint8Array([0, 1])), null, 'empty id');
  assert.equal(decodeDedupedPayload(new Uint8Array([5, 0x61])), null, 'truncated');
  assert.equal(decodeDedupedPayload(new Uint8Array([1, 0x20, 1])), null, 'a space is no id');
  assert.throws(() => encodeDedupedPayload('x'.repeat(65), inner));
});

test('a duplicate put is answered with the first revision and prevKv, and applied once', () => {
  const sm = machine();
  let i = 1;
  revisionOf(sm.apply({ index: ++i, term: 1 }, putCmd(sm, 'k', 'old')));
  const cmd = encodeDeduped('req-1', putCmd(sm, 'k', 'new', true));
  const first = sm.apply({ index: ++i, term: 1 }, cmd);
  const rev = revisionOf(first);
  // Other writes in between: the retry must not report the revision of now.
  revisionOf(sm.apply({ index: ++i, term: 1 }, putCmd(sm, 'other')));
  const again = sm.apply({ index: ++i, term: 2 }, cmd);
  assert.equal(revisionOf(again), rev, 'the original revision');
  assert.deepEqual(plain(again), plain(first), 'the same answer, prevKv included');
  assert.equal(plain(first).includes('"prevKv":{'), true, 'a prevKv to compare');
  assert.equal(versionOf(sm, 'k'), 2, 'created, then put once: not twice');
  assert.equal(sm.revision(), rev + 1, 'the duplicate made no revision');
  assert.equal(sm.appliedIndex(), i, 'the duplicate still consumed its index');
  assert.equal(sm.dedupe.duplicatesAnswered, 1);
});

test('a txn counter incremented through a request id counts once per id', () => {
  const sm = machine();
  let i = 1;
  // The counter's value is its version: each applied txn puts it once.
  const bump = (id: string) =>
    sm.apply(
      { index: ++i, term: 1 },
      encodeDeduped(
        id,
        sm.encodeKv({
          type: 'txn',
          request: txnRequest({
            compare: [
              compare({
                key: b('ctr'),
                target: CompareTarget.Version,
                result: CompareResult.Greater,
                version: -1,
              }),
            ],
            success: [op.put(putRequest({ key: b('ctr'), value: b('x') }))],
          }),
        }),
      ),
    );
  const r1 = revisionOf(bump('a'));
  assert.equal(revisionOf(bump('a')), r1);
  revisionOf(bump('b'));
  assert.equal(revisionOf(bump('a')), r1);
  assert.equal(versionOf(sm, 'ctr'), 2, 'two ids, two increments');
});

test('a rejected request is answered with the same rejection; an id reused for another request is refused', () => {
  const sm = machine();
  const badLease = sm.encodeKv({
    type: 'put',
    request: putRequest({ key: b('k'), lease: 7n }),
  });
  const r1 = sm.apply({ index: 2, term: 1 }, encodeDeduped('r', badLease));
  assert.equal(r1.kind, 'rejected');
  const r2 = sm.apply({ index: 3, term: 1 }, encodeDeduped('r', badLease));
  assert.equal(r2.kind, 'rejected');
  assert.equal((r2 as { error: Error }).error.message, (r1 as { error: Error }).error.message);
  const other = sm.apply({ index: 4, term: 1 }, encodeDeduped('r', putCmd(sm, 'k')));
  assert.equal(other.kind, 'rejected');
  assert.equal((other as { error: { code: string } }).error.code, 'REQUEST_ID_REUSED');
  assert.equal(versionOf(sm, 'k'), 0, 'nothing written');
});

test('deletes and answers too large to keep', () => {
  const sm = machine(new MemoryBackend(), { answerBytesMax: 64 });
  sm.apply({ index: 2, term: 1 }, putCmd(sm, 'big', 'v'.repeat(200)));
  const del = encodeDeduped(
    'd',
    sm.encodeKv({
      type: 'deleteRange',
      request: deleteRangeRequest({ key: b('big'), prevKv: true }),
    }),
  );
  assert.equal(sm.apply({ index: 3, term: 1 }, del).kind, 'applied');
  const again = sm.apply({ index: 4, term: 1 }, del);
  assert.equal((again as { error: { code: string } }).error.code, 'REQUEST_ID_ANSWER_DROPPED');
  assert.equal(sm.revision(), 3, 'deleted once');
});

test('the table is bounded by records and by log entries; a forgotten id applies again', () => {
  const sm = machine(new MemoryBackend(), { recordsMax: 3, windowEntries: 10 });
  let i = 1;
  for (const id of ['a', 'b', 'c', 'd'])
    sm.apply({ index: ++i, term: 1 }, encodeDeduped(id, putCmd(sm, id)));
  assert.deepEqual(
    sm.dedupe.entries().map(([k]) => k),
    ['\0b', '\0c', '\0d'],
    'the oldest forgotten past 3 records',
  );
  // 'a' was forgotten: it applies again (a second version).
  sm.apply({ index: ++i, term: 1 }, encodeDeduped('a', putCmd(sm, 'a')));
  assert.equal(versionOf(sm, 'a'), 2);
  // 'd' at index 5; 10 entries later it is out of the window, whether or not it was evicted.
  const dIndex = sm.dedupe.entries().find(([k]) => k === '\0d')![1];
  while (i < dIndex + 9) sm.apply({ index: ++i, term: 1 }, putCmd(sm, 'filler'));
  sm.apply({ index: ++i, term: 1 }, encodeDeduped('d', putCmd(sm, 'd')));
  assert.equal(i - dIndex, 10);
  assert.equal(versionOf(sm, 'd'), 2, 'out of the window: applied again');
  assert.ok(sm.dedupe.size <= 3);
  // Eviction by age at a record: every record older than the window goes.
  while (i < dIndex + 40) sm.apply({ index: ++i, term: 1 }, putCmd(sm, 'filler'));
  sm.apply({ index: ++i, term: 1 }, encodeDeduped('e', putCmd(sm, 'e')));
  assert.deepEqual(
    sm.dedupe.entries().map(([k]) => k),
    ['\0e'],
  );
});

test('the table is bounded by the bytes of its answers', () => {
  const backend = new MemoryBackend();
  const sm = machine(backend, { answerBytesMax: 4096, bytesMax: 2048 });
  let i = 1;
  // Each answer carries a 300-byte prevKv: a few fit in 2 KiB, the oldest go.
  for (let n = 0; n < 20; n++) {
    sm.apply({ index: ++i, term: 1 }, putCmd(sm, `k${n}`, 'v'.repeat(300)));
    sm.apply({ index: ++i, term: 1 }, encodeDeduped(`id${n}`, putCmd(sm, `k${n}`, 'w', true)));
  }
  assert.ok(sm.dedupe.sizeBytes <= 2048, `${sm.dedupe.sizeBytes} bytes`);
  assert.ok(sm.dedupe.size >= 3 && sm.dedupe.size < 20, `${sm.dedupe.size} records`);
  assert.deepEqual(sm.dedupe.entries().at(-1)?.[0], '\0id19', 'the newest kept');
  const reopened = machine(backend, { answerBytesMax: 4096, bytesMax: 2048 });
  assert.equal(reopened.dedupe.sizeBytes, sm.dedupe.sizeBytes, 'the same bytes after a restart');
});

test('the table survives a restart (LMDB) and a snapshot installed on another member', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-dedupe-'));
  try {
    const backend = new LmdbBackend({ path: dir });
    const sm = machine(backend);
    const cmd = encodeDeduped('keep', putCmd(sm, 'k', 'v', true));
    const rev = revisionOf(sm.apply({ index: 2, term: 1 }, cmd));
    sm.apply({ index: 3, term: 1 }, putCmd(sm, 'k', 'later'));
    await backend.close();
    const reopenedBackend = new LmdbBackend({ path: dir });
    const reopened = machine(reopenedBackend);
    assert.equal(revisionOf(reopened.apply({ index: 4, term: 1 }, cmd)), rev, 'after a restart');
    assert.equal(versionOf(reopened, 'k'), 2);

    const other = machine();
    other.restore({
      metadata: { index: 4, term: 1, confState: CONF_STATE },
      data: reopened.snapshot(),
    });
    assert.deepEqual(other.dedupe.entries(), reopened.dedupe.entries());
    assert.equal(revisionOf(other.apply({ index: 5, term: 1 }, cmd)), rev, 'after a snapshot');
    assert.equal(versionOf(other, 'k'), 2);
    await reopenedBackend.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('members applying the same entries hold the same table and answer the same', () => {
  const entries: Uint8Array[] = [];
  const gen = machine();
  for (let n = 0; n < 200; n++) {
    // A deterministic mix: new ids, retries of recent ones, plain puts.
    const id = `id-${(n * 7) % 40}`;
    entries.push(n % 5 === 0 ? putCmd(gen, `p${n}`) : encodeDeduped(id, putCmd(gen, id)));
  }
  const members = [1, 2, 3].map(() =>
    machine(new MemoryBackend(), { recordsMax: 16, windowEntries: 60 }),
  );
  const answers = members.map((sm) =>
    entries.map((e, n) =>
      JSON.stringify(sm.apply({ index: n + 2, term: 1 }, e), (_k, v) =>
        typeof v === 'bigint' ? v.toString() : v,
      ),
    ),
  );
  assert.deepEqual(answers[1], answers[0]);
  assert.deepEqual(answers[2], answers[0]);
  assert.deepEqual(members[1]!.dedupe.entries(), members[0]!.dedupe.entries());
  assert.deepEqual(members[1]!.hash(), members[0]!.hash());
  assert.ok(members[0]!.dedupe.size <= 16);
  // A member that restarts from its backend holds the same table.
  const backend = new MemoryBackend();
  const d = machine(backend, { recordsMax: 16, windowEntries: 60 });
  for (const [n, e] of entries.entries()) d.apply({ index: n + 2, term: 1 }, e);
  const reopened = machine(backend, { recordsMax: 16, windowEntries: 60 });
  assert.deepEqual(reopened.dedupe.entries(), members[0]!.dedupe.entries());
});

test('with auth on, an id is the user’s: a bare deduped command is refused, another user’s id is new', () => {
  const sm = machine();
  const setup: AuthOp[] = [
    { op: 'userAdd', name: 'root', passwordHash: 'h', noPassword: false },
    { op: 'userGrantRole', user: 'root', role: 'root' },
    { op: 'userAdd', name: 'u2', passwordHash: 'h', noPassword: false },
    { op: 'userGrantRole', user: 'u2', role: 'root' },
    { op: 'authEnable' },
  ];
  let i = 1;
  for (const o of setup) {
    const r = sm.apply(
      { index: ++i, term: 1 },
      encodeAuth({ kind: 'op', header: { username: '', revision: 0 }, op: o }),
    );
    assert.equal(r.kind, 'auth');
  }
  const cmd = encodeDeduped('same', putCmd(sm, 'k'));
  const bare = sm.apply({ index: ++i, term: 1 }, cmd);
  assert.equal((bare as { error: { code: string } }).error.code, 'USER_EMPTY');
  const root = { username: 'root', revision: sm.auth().revision };
  const u2 = { username: 'u2', revision: sm.auth().revision };
  const r1 = revisionOf(sm.apply({ index: ++i, term: 1 }, encodeAuthorized(root, cmd)));
  assert.equal(revisionOf(sm.apply({ index: ++i, term: 1 }, encodeAuthorized(root, cmd))), r1);
  assert.ok(revisionOf(sm.apply({ index: ++i, term: 1 }, encodeAuthorized(u2, cmd))) > r1);
  assert.equal(versionOf(sm, 'k'), 2, 'once for root, once for u2');
});
