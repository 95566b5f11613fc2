/**
 * The auth store (src/kv/auth): range permission math against naive references (fast-check),
 * and etcd 3.4's store semantics: revisions, root rules, admin checks, old revisions, the
 * persisted form and the log entry codec.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  AuthError,
  type AuthErrorCode,
  type AuthHeader,
  AuthStore,
  decodeAuthCommand,
  encodeAuthCommand,
  IntervalSet,
  type KeyPermission,
  NO_CREDENTIALS,
  PermType,
  SimpleTokens,
  simpleTokenIndex,
  UserPermissions,
} from '../../src/kv/auth/index.js';
import { compareBytes } from '../../src/util/bytes.js';

const enc = new TextEncoder();
const b = (s: string): Uint8Array => enc.encode(s);
const OPEN = new Uint8Array([0]);
const EMPTY = new Uint8Array(0);

// --- range permissions -----------------------------------------------------------------------

/** Short keys over a tiny alphabet (0x00 included): collisions and adjacency are frequent. */
const keyArb = fc
  .array(fc.constantFrom(0x00, 0x61, 0x62, 0x63), { minLength: 1, maxLength: 3 })
  .map((a) => Uint8Array.from(a));
const rangeArb = fc.oneof(
  keyArb.map((key) => ({ key, rangeEnd: EMPTY })),
  keyArb.map((key) => ({ key, rangeEnd: OPEN })),
  fc
    .tuple(keyArb, keyArb)
    .map(([x, y]) => (compareBytes(x, y) < 0 ? { key: x, rangeEnd: y } : { key: y, rangeEnd: x })),
);

/** The naive model of one grant: does it hold `key`? */
function grantHolds(g: { key: Uint8Array; rangeEnd: Uint8Array }, key: Uint8Array): boolean {
  if (g.rangeEnd.length === 0) return compareBytes(g.key, key) === 0;
  if (g.rangeEnd.length === 1 && g.rangeEnd[0] === 0) return compareBytes(g.key, key) <= 0;
  return compareBytes(g.key, key) <= 0 && compareBytes(key, g.rangeEnd) < 0;
}

/** A grant's exclusive end (null: ∞), for the naive sweep. */
function grantEnd(g: { key: Uint8Array; rangeEnd: Uint8Array }): Uint8Array | null {
  if (g.rangeEnd.length === 0) return Uint8Array.from([...g.key, 0]);
  if (g.rangeEnd.length === 1 && g.rangeEnd[0] === 0) return null;
  return g.rangeEnd;
}

/**
 * Naive coverage of [key, end): walk a cursor from `key`, each round taking any grant that holds
 * the cursor and jumping to its end, until past `end` or stuck. No merging, no sorting. An empty
 * request range (end <= key) counts as covered only if its key is (as etcd's interval tree).
 */
function naiveCovers(
  grants: readonly { key: Uint8Array; rangeEnd: Uint8Array }[],
  key: Uint8Array,
  end: Uint8Array | null,
): boolean {
  if (!grants.some((g) => grantHolds(g, key))) return false;
  let cursor: Uint8Array | null = key;
  for (let round = 0; round <= grants.length; round++) {
    if (cursor === null) return true;
    if (end !== null && compareBytes(cursor, end) >= 0) return true;
    const at: Uint8Array = cursor;
    const holding = grants.filter((g) => grantHolds(g, at));
    if (holding.length === 0) return false;
    let next: Uint8Array | null = at;
    for (const g of holding) {
      const e = grantEnd(g);
      if (e === null) next = null;
      else if (next !== null && compareBytes(e, next) > 0) next = e;
    }
    cursor = next;
  }
  return cursor === null || (end !== null && compareBytes(cursor, end) >= 0);
}

describe('range permissions (etcd range_perm_cache)', () => {
  test('a key is permitted iff some granted range holds it', () => {
    fc.assert(
      fc.property(fc.array(rangeArb, { maxLength: 8 }), keyArb, (grants, key) => {
        const set = IntervalSet.of(grants);
        assert.equal(
          set.containsKey(key),
          grants.some((g) => grantHolds(g, key)),
        );
      }),
      { numRuns: 2000 },
    );
  });

  test('a range is permitted iff the union of the grants covers it (naive sweep)', () => {
    fc.assert(
      fc.property(fc.array(rangeArb, { maxLength: 8 }), rangeArb, (grants, req) => {
        const set = IntervalSet.of(grants);
        const end = req.rangeEnd.length === 1 && req.rangeEnd[0] === 0 ? null : req.rangeEnd;
        if (req.rangeEnd.length === 0) return; // a point: the test above
        assert.equal(set.coversRange(req.key, end), naiveCovers(grants, req.key, end));
      }),
      { numRuns: 2000 },
    );
  });

  test('a permitted range holds no key that is not permitted (enumerated keys)', () => {
    const universe: Uint8Array[] = [];
    const alphabet = [0x00, 0x61, 0x62, 0x63];
    const grow = (prefix: number[]): void => {
      if (prefix.length > 0) universe.push(Uint8Array.from(prefix));
      if (prefix.length < 3) for (const c of alphabet) grow([...prefix, c]);
    };
    grow([]);
    fc.assert(
      fc.property(fc.array(rangeArb, { maxLength: 6 }), rangeArb, (grants, req) => {
        const perms = UserPermissions.of(
          grants.map((g) => ({ ...g, permType: PermType.Read }) as KeyPermission),
        );
        if (!perms.permits(PermType.Read, req.key, req.rangeEnd)) return;
        for (const k of universe) {
          if (grantHolds(req, k)) {
            assert.ok(
              grants.some((g) => grantHolds(g, k)),
              `key ${[...k]} in a permitted request range but in no grant`,
            );
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  test('read and write are separate; readwrite grants both', () => {
    const perms = UserPermissions.of([
      { permType: PermType.Read, key: b('r'), rangeEnd: EMPTY },
      { permType: PermType.Write, key: b('w'), rangeEnd: EMPTY },
      { permType: PermType.ReadWrite, key: b('x/'), rangeEnd: b('x0') },
    ]);
    assert.ok(perms.permits(PermType.Read, b('r'), EMPTY));
    assert.ok(!perms.permits(PermType.Write, b('r'), EMPTY));
    assert.ok(perms.permits(PermType.Write, b('w'), EMPTY));
    assert.ok(!perms.permits(PermType.Read, b('w'), EMPTY));
    assert.ok(perms.permits(PermType.Read, b('x/'), b('x0')));
    assert.ok(perms.permits(PermType.Write, b('x/a'), EMPTY));
    assert.ok(!perms.permits(PermType.Write, b('x/'), OPEN));
  });
});

// --- the store --------------------------------------------------------------------------------

function code(fn: () => unknown): AuthErrorCode | 'none' {
  try {
    fn();
    return 'none';
  } catch (error) {
    assert.ok(error instanceof AuthError, String(error));
    return error.code;
  }
}

/** root with the root role, alice with role r (read on foo); auth enabled. */
function enabledStore(): { store: AuthStore; root: () => AuthHeader; alice: () => AuthHeader } {
  const store = new AuthStore();
  const anyone = NO_CREDENTIALS;
  store.apply({ op: 'userAdd', name: 'root', passwordHash: 'h', noPassword: false }, anyone);
  store.apply({ op: 'userGrantRole', user: 'root', role: 'root' }, anyone);
  store.apply({ op: 'userAdd', name: 'alice', passwordHash: 'h', noPassword: false }, anyone);
  store.apply({ op: 'roleAdd', name: 'r' }, anyone);
  store.apply(
    { op: 'roleGrantPermission', name: 'r', perm: { permType: 0, key: b('foo'), rangeEnd: EMPTY } },
    anyone,
  );
  store.apply({ op: 'userGrantRole', user: 'alice', role: 'r' }, anyone);
  store.apply({ op: 'authEnable' }, anyone);
  return {
    store,
    root: () => ({ username: 'root', revision: store.revision }),
    alice: () => ({ username: 'alice', revision: store.revision }),
  };
}

describe('auth store (etcd 3.4 semantics)', () => {
  test('revisions: 1 when fresh, +1 per change, none for enable or a repeated grant', () => {
    const store = new AuthStore();
    assert.equal(store.revision, 1);
    store.apply(
      { op: 'userAdd', name: 'root', passwordHash: 'h', noPassword: false },
      NO_CREDENTIALS,
    );
    assert.equal(store.revision, 2);
    assert.equal(
      code(() => store.apply({ op: 'authEnable' }, NO_CREDENTIALS)),
      'ROOT_ROLE_NOT_EXIST',
    );
    store.apply({ op: 'userGrantRole', user: 'root', role: 'root' }, NO_CREDENTIALS);
    store.apply({ op: 'userGrantRole', user: 'root', role: 'root' }, NO_CREDENTIALS);
    assert.equal(store.revision, 3);
    store.apply({ op: 'authEnable' }, NO_CREDENTIALS);
    assert.equal(store.revision, 3);
    assert.ok(store.enabled);
  });

  test('management needs root once enabled; self and role holders may get', () => {
    const { store, root, alice } = enabledStore();
    const add = { op: 'roleAdd', name: 'x' } as const;
    assert.equal(
      code(() => store.apply(add, NO_CREDENTIALS)),
      'USER_EMPTY',
    );
    assert.equal(
      code(() => store.apply(add, { username: 'nosuch', revision: 9 })),
      'USER_NOT_FOUND',
    );
    assert.equal(
      code(() => store.apply(add, alice())),
      'PERMISSION_DENIED',
    );
    assert.equal(
      code(() => store.apply(add, root())),
      'none',
    );
    assert.equal(
      code(() => store.apply({ op: 'userGet', name: 'alice' }, alice())),
      'none',
    );
    assert.equal(
      code(() => store.apply({ op: 'userGet', name: 'root' }, alice())),
      'PERMISSION_DENIED',
    );
    assert.equal(
      code(() => store.apply({ op: 'roleGet', role: 'r' }, alice())),
      'none',
    );
    assert.equal(
      code(() => store.apply({ op: 'roleGet', role: 'x' }, alice())),
      'PERMISSION_DENIED',
    );
  });

  test('root may not be deleted or lose root while enabled', () => {
    const { store, root } = enabledStore();
    assert.equal(
      code(() => store.apply({ op: 'userDelete', name: 'root' }, root())),
      'INVALID_AUTH_MGMT',
    );
    assert.equal(
      code(() => store.apply({ op: 'roleDelete', role: 'root' }, root())),
      'INVALID_AUTH_MGMT',
    );
    assert.equal(
      code(() => store.apply({ op: 'userRevokeRole', name: 'root', role: 'root' }, root())),
      'INVALID_AUTH_MGMT',
    );
  });

  test('checkOp: empty user, old revision, denied, root everywhere, disabled allows all', () => {
    const { store, root, alice } = enabledStore();
    assert.equal(
      code(() => store.checkOp(NO_CREDENTIALS, PermType.Read, b('foo'), EMPTY)),
      'USER_EMPTY',
    );
    assert.equal(
      code(() => store.checkOp(alice(), PermType.Read, b('foo'), EMPTY)),
      'none',
    );
    assert.equal(
      code(() => store.checkOp(alice(), PermType.Write, b('foo'), EMPTY)),
      'PERMISSION_DENIED',
    );
    assert.equal(
      code(() => store.checkOp(alice(), PermType.Read, b('fo'), EMPTY)),
      'PERMISSION_DENIED',
    );
    assert.equal(
      code(() => store.checkOp(root(), PermType.Write, b('any'), OPEN)),
      'none',
    );
    const stale = alice();
    store.apply({ op: 'roleAdd', name: 'y' }, root());
    assert.equal(
      code(() => store.checkOp(stale, PermType.Read, b('foo'), EMPTY)),
      'AUTH_OLD_REVISION',
    );
    store.apply({ op: 'authDisable' }, root());
    assert.equal(
      code(() => store.checkOp(NO_CREDENTIALS, PermType.Write, b('x'), EMPTY)),
      'none',
    );
  });

  test('deleting a role takes it from its users; revoking a permission checks it was granted', () => {
    const { store, root, alice } = enabledStore();
    assert.equal(
      code(() =>
        store.apply(
          { op: 'roleRevokePermission', role: 'r', key: b('bar'), rangeEnd: EMPTY },
          root(),
        ),
      ),
      'PERMISSION_NOT_GRANTED',
    );
    store.apply({ op: 'roleDelete', role: 'r' }, root());
    assert.deepEqual(store.user('alice')?.roles, []);
    assert.equal(
      code(() => store.checkOp(alice(), PermType.Read, b('foo'), EMPTY)),
      'PERMISSION_DENIED',
    );
  });

  test('an inverted range is refused (isValidPermissionRange); a missing one too', () => {
    const { store, root } = enabledStore();
    const perm = { permType: PermType.Read, key: b('b'), rangeEnd: b('a') } as KeyPermission;
    assert.equal(
      code(() => store.apply({ op: 'roleGrantPermission', name: 'r', perm }, root())),
      'INVALID_AUTH_MGMT',
    );
    assert.equal(
      code(() => store.apply({ op: 'roleGrantPermission', name: 'r', perm: null }, root())),
      'PERMISSION_NOT_GIVEN',
    );
  });

  test('the persisted form gives back the same store, permissions included', () => {
    const { store, alice } = enabledStore();
    const copy = AuthStore.decode(store.encode());
    assert.deepEqual(copy.encode(), store.encode());
    assert.equal(copy.revision, store.revision);
    assert.ok(copy.enabled);
    assert.equal(
      code(() => copy.checkOp(alice(), PermType.Read, b('foo'), EMPTY)),
      'none',
    );
    assert.equal(
      code(() => copy.checkOp(alice(), PermType.Read, b('fop'), EMPTY)),
      'PERMISSION_DENIED',
    );
  });

  test('log entries round-trip; malformed ones decode to null', () => {
    const op = {
      op: 'roleGrantPermission',
      name: 'r',
      perm: { permType: PermType.ReadWrite, key: b('k'), rangeEnd: OPEN },
    } as const;
    const decoded = decodeAuthCommand(
      encodeAuthCommand({ kind: 'op', header: { username: 'u', revision: 3 }, op }),
    );
    assert.deepEqual(decoded, { kind: 'op', header: { username: 'u', revision: 3 }, op });
    assert.equal(decodeAuthCommand(new Uint8Array([0xc1])), null);
    assert.equal(
      decodeAuthCommand(
        encodeAuthCommand({
          kind: 'op',
          header: NO_CREDENTIALS,
          op: { op: 'userAdd', name: 5 } as never,
        }),
      ),
      null,
    );
  });
});

describe('simple tokens', () => {
  test('expire after the TTL since last use; a use refreshes; invalidation by user', () => {
    const tokens = new SimpleTokens(1000);
    tokens.assign('abc.5', 'alice', 0);
    tokens.assign('def.6', 'bob', 0);
    assert.equal(tokens.use('abc.5', 900), 'alice');
    assert.equal(tokens.use('abc.5', 1800), 'alice');
    assert.equal(tokens.use('def.6', 1800), null);
    tokens.invalidateUser('alice');
    assert.equal(tokens.use('abc.5', 1801), null);
    tokens.assign('old.7', 'carol', 2000);
    tokens.assign('new.8', 'dave', 2500);
    tokens.sweep(3200);
    assert.equal(tokens.size, 1, 'the expired one swept, the live one kept');
    assert.equal(tokens.use('new.8', 3200), 'dave');
    assert.equal(simpleTokenIndex('abc.5'), 5);
    assert.equal(simpleTokenIndex('abc'), null);
    assert.equal(simpleTokenIndex('a.b.1'), null);
  });
});
