/**
 * The auth commands of the replicated state machine (kinds 9 and 10 of tandem-state-machine.ts):
 * ops applied and persisted in the meta bucket, Authenticate making a token every member
 * applying it knows, a write checked under an older auth revision refused at apply, a write
 * without credentials refused while auth is on, and the store carried by a snapshot.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { putRequest } from '../../src/kv/api-types.js';
import type { AuthOp } from '../../src/kv/auth/index.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import {
  type CommandResult,
  encodeAuth,
  encodeAuthorized,
  TandemStateMachine,
} from '../../src/server/tandem-state-machine.js';

const b = (s: string) => new TextEncoder().encode(s);
const founders = [{ id: 1, name: 'n1', peerUrls: ['127.0.0.1:2380'], clientUrls: [] }];
const ANYONE = { username: '', revision: 0 };

function machine(backend = new MemoryBackend()) {
  return new TandemStateMachine({ backend, founders, nowMs: () => 0 });
}

/** Applies ops at consecutive indexes from `from`; the next free index. */
function applyOps(
  sm: TandemStateMachine,
  from: number,
  ops: readonly AuthOp[],
  as = ANYONE,
): number {
  let i = from;
  for (const op of ops) {
    const r = sm.apply({ index: i++, term: 1 }, encodeAuth({ kind: 'op', header: as, op }));
    assert.equal(r.kind, 'auth', JSON.stringify(r));
  }
  return i;
}

const SETUP: readonly AuthOp[] = [
  { op: 'userAdd', name: 'root', passwordHash: 'h', noPassword: false },
  { op: 'userGrantRole', user: 'root', role: 'root' },
  { op: 'authEnable' },
];

const put = (sm: TandemStateMachine, key: string) =>
  sm.encodeKv({ type: 'put', request: putRequest({ key: b(key), value: b('v') }) });

function errorCode(r: CommandResult): string {
  return r.kind === 'authRejected' ? r.error.code : r.kind;
}

test('auth ops persist in the meta bucket: a reopened machine has the same store', () => {
  const backend = new MemoryBackend();
  const sm = machine(backend);
  applyOps(sm, 2, SETUP);
  const reopened = machine(backend);
  assert.ok(reopened.auth().enabled);
  assert.equal(reopened.auth().revision, sm.auth().revision);
  assert.deepEqual(reopened.auth().user('root')?.roles, ['root']);
});

test('Authenticate makes "<prefix>.<index>" known to the member that applied it', () => {
  const sm = machine();
  const next = applyOps(sm, 2, SETUP);
  const r = sm.apply(
    { index: next, term: 1 },
    encodeAuth({ kind: 'authenticate', name: 'root', tokenPrefix: 'abcdefghijklmnop' }),
  );
  assert.deepEqual(r, { kind: 'authenticated', token: `abcdefghijklmnop.${next}` });
  assert.equal(sm.simpleTokens.use(`abcdefghijklmnop.${next}`, 1), 'root');
  const nobody = sm.apply(
    { index: next + 1, term: 1 },
    encodeAuth({ kind: 'authenticate', name: 'nobody', tokenPrefix: 'x' }),
  );
  assert.equal(errorCode(nobody), 'AUTH_FAILED');
});

test('a write checked under an older auth revision, or without credentials, is refused at apply', () => {
  const sm = machine();
  let i = applyOps(sm, 2, SETUP);
  const checkedAt = sm.auth().revision;
  const root = { username: 'root', revision: checkedAt };
  assert.equal(
    sm.apply({ index: i++, term: 1 }, encodeAuthorized(root, put(sm, 'a'))).kind,
    'applied',
  );
  assert.equal(errorCode(sm.apply({ index: i++, term: 1 }, put(sm, 'b'))), 'USER_EMPTY');
  i = applyOps(sm, i, [{ op: 'roleAdd', name: 'r' }], root);
  const stale = sm.apply({ index: i++, term: 1 }, encodeAuthorized(root, put(sm, 'c')));
  assert.equal(errorCode(stale), 'AUTH_OLD_REVISION');
  assert.equal(sm.revision(), 2, 'only the first put changed the store');
});

test('a management op applied as a non-root user is refused once auth is on', () => {
  const sm = machine();
  const i = applyOps(sm, 2, [...SETUP]);
  const r = sm.apply(
    { index: i, term: 1 },
    encodeAuth({ kind: 'op', header: ANYONE, op: { op: 'roleAdd', name: 'x' } }),
  );
  assert.equal(errorCode(r), 'USER_EMPTY');
  assert.equal(sm.auth().role('x'), undefined);
});

test('a snapshot carries the auth store to another member', () => {
  const a = machine();
  const i = applyOps(a, 2, [{ op: 'roleAdd', name: 'r' }, ...SETUP]);
  const data = a.snapshot();
  const other = machine();
  other.restore({
    metadata: {
      index: i - 1,
      term: 1,
      confState: {
        voters: [1],
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      },
    },
    data,
  });
  assert.ok(other.auth().enabled);
  assert.equal(other.auth().revision, a.auth().revision);
  assert.ok(other.auth().role('r') !== undefined);
});
