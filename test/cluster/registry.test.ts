import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import {
  decodeChangeContext,
  decodeRegistryCommand,
  encodeChangeContext,
  encodeRegistryCommand,
  type RegistryCommand,
} from '../../src/cluster/commands.js';
import { FailureDetector } from '../../src/cluster/health.js';
import {
  decodeAttributes,
  encodeAttributes,
  MemberRegistry,
  REMOVED_IDS_MAX,
  RegistryError,
} from '../../src/cluster/registry.js';
import { ConfChangeTransition, ConfChangeType, type ConfState } from '../../src/raft/types.js';

const conf = (voters: number[], learners: number[] = [], more: Partial<ConfState> = {}) => ({
  voters,
  learners,
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
  ...more,
});

const founders = () =>
  MemberRegistry.bootstrap([
    { id: 1, name: 'n1', peerUrls: ['a:1'], clientUrls: ['a:2'] },
    { id: 2, name: 'n2', peerUrls: ['b:1'], clientUrls: ['b:2'] },
    { id: 3, name: 'n3', peerUrls: ['c:1'], clientUrls: ['c:2'] },
  ]);

const etcdView = (r: MemberRegistry, id: number) => {
  const m = r.get(id);
  return (
    m && {
      id: m.id,
      name: m.name,
      peerUrls: m.peerUrls,
      clientUrls: m.clientUrls,
      isLearner: m.isLearner,
    }
  );
};

test('attributes round-trip, and garbage decodes to null rather than throwing', () => {
  const a = { name: 'n4', peerUrls: ['127.0.0.1:2480', '127.0.0.2:2480'], clientUrls: [] };
  assert.deepEqual(decodeAttributes(encodeAttributes(a)), a);
  assert.equal(decodeAttributes(new Uint8Array([0xc1, 0xff, 0x00])), null);
  assert.equal(decodeAttributes(new Uint8Array()), null);
  assert.throws(
    () => encodeAttributes({ name: 'x'.repeat(300), peerUrls: [], clientUrls: [] }),
    RegistryError,
  );
  // A policy context is not mistaken for attributes.
  assert.equal(decodeAttributes(encodeChangeContext({ atMs: 5, commands: [] })), null);
});

test('a conf state adds learners with attributes, promotes them, and removes members', () => {
  const r = founders();
  r.applyConfState(conf([1, 2, 3], [4]), 4, { name: '', peerUrls: ['d:1'], clientUrls: [] });
  assert.deepEqual(etcdView(r, 4), {
    id: 4,
    name: '',
    peerUrls: ['d:1'],
    clientUrls: [],
    isLearner: true,
  });
  assert.equal(r.get(4)?.role, 'standby', 'a member joining as a learner is a standby');
  r.updateAttributes(4, { name: 'n4', clientUrls: ['d:2'] });
  r.applyConfState(conf([1, 2, 3, 4]), 4, null);
  assert.deepEqual(etcdView(r, 4), {
    id: 4,
    name: 'n4',
    peerUrls: ['d:1'],
    clientUrls: ['d:2'],
    isLearner: false,
  });
  assert.equal(r.get(4)?.role, 'voter');
  r.applyConfState(conf([1, 2, 4]), 3, null);
  assert.deepEqual(
    r.list().map((m) => m.id),
    [1, 2, 4],
  );
  assert.equal(r.findByPeerUrl('b:1')?.name, 'n2');
});

test('the snapshot restores an identical registry, roles and all', () => {
  const r = MemberRegistry.bootstrap([
    { id: 7, name: 'n7', peerUrls: ['x:1'], clientUrls: ['x:2'] },
  ]);
  r.applyConfState(conf([7], [9]), 9, { name: 'n9', peerUrls: ['y:1'], clientUrls: [] });
  r.applyCommand({ kind: 'set-role', id: 9, role: 'replica' });
  r.applyCommand({ kind: 'set-zone', id: 9, zone: 'eu-1b' });
  r.applyCommand({
    kind: 'register',
    id: 11,
    name: 'n11',
    peerUrls: ['z:1'],
    clientUrls: [],
    zone: 'eu-1a',
    mode: 'warm',
    snapshotEveryMs: 30_000,
  });
  r.applyCommand({ kind: 'record-health', id: 11, health: 'unreachable', sinceMs: 1234 });
  const copy = MemberRegistry.fromSnapshot(r.toSnapshot());
  assert.deepEqual(copy.all(), r.all());
  assert.equal(copy.all().length, 3);
});

test('a version 1 snapshot (a list of 5-tuples) is still read, with default roles', () => {
  const v1 = [
    [1, 'n1', ['a:1'], ['a:2'], false],
    [4, 'n4', ['d:1'], [], true],
  ];
  const r = MemberRegistry.fromSnapshot(v1);
  assert.deepEqual(
    r.all().map((m) => [m.id, m.role, m.standbyMode, m.placement, m.isLearner]),
    [
      [1, 'voter', 'hot', 'voter', false],
      [4, 'standby', 'hot', 'learner', true],
    ],
  );
  assert.throws(() => MemberRegistry.fromSnapshot({ version: 99, members: [] }), /version 99/);
});

test('warm and cold standbys are registered outside the configuration: all() has them, list() not', () => {
  const r = founders();
  r.applyCommand({
    kind: 'register',
    id: 5,
    name: 'n5',
    peerUrls: ['e:1'],
    clientUrls: [],
    zone: 'b',
    mode: 'cold',
    snapshotEveryMs: 60_000,
  });
  assert.deepEqual(
    r.list().map((m) => m.id),
    [1, 2, 3],
  );
  assert.deepEqual(
    r.all().map((m) => m.id),
    [1, 2, 3, 5],
  );
  // A configuration change that does not mention it leaves it registered.
  r.applyConfState(conf([1, 2, 3]), null, null);
  assert.equal(r.get(5)?.placement, 'none');
  r.applyCommand({ kind: 'remove', id: 5 });
  assert.equal(r.get(5), undefined);
});

/** Applies a change the way the member will: raft's resulting conf state plus the entry. */
function replaceThroughJoint(demotedMode: 'hot' | 'warm') {
  const r = founders();
  r.applyConfState(conf([1, 2, 3], [4]), 4, { name: 'n4', peerUrls: ['d:1'], clientUrls: [] });
  r.applyCommand({ kind: 'set-standby', id: 2, mode: demotedMode, snapshotEveryMs: 60_000 });
  const demote = demotedMode === 'hot' ? ConfChangeType.AddLearnerNode : ConfChangeType.RemoveNode;
  const change = {
    transition: ConfChangeTransition.JointImplicit,
    changes: [
      { type: ConfChangeType.AddNode, nodeId: 4 },
      { type: demote, nodeId: 2 },
    ],
    context: encodeChangeContext({
      atMs: 777,
      commands: [
        { kind: 'record-promotion', id: 4, atMs: 777 },
        { kind: 'record-demotion', id: 2, atMs: 777, role: 'standby' },
      ],
    }),
  };
  const learnersNext = demotedMode === 'hot' ? [2] : [];
  r.applyConfChange(
    conf([1, 3, 4], [], { votersOutgoing: [1, 2, 3], learnersNext, autoLeave: true }),
    change,
  );
  const joint = r.get(2);
  const leave = { transition: ConfChangeTransition.Auto, changes: [], context: new Uint8Array() };
  r.applyConfChange(conf([1, 3, 4], learnersNext), leave);
  return { r, joint };
}

test('a replacement through joint consensus records the promotion and the demotion', () => {
  const { r, joint } = replaceThroughJoint('hot');
  assert.equal(joint?.placement, 'voter', 'an outgoing voter still votes in the joint config');
  assert.equal(joint?.role, 'standby');
  assert.deepEqual(
    [r.get(4)?.role, r.get(4)?.promotedAtMs, r.get(2)?.role, r.get(2)?.demotedAtMs],
    ['voter', 777, 'standby', 777],
  );
  assert.equal(r.get(2)?.placement, 'learner', 'a hot demoted voter stays a learner');
});

test('a voter demoted to a warm standby leaves the configuration but stays registered', () => {
  const { r } = replaceThroughJoint('warm');
  assert.equal(r.get(2)?.placement, 'none');
  assert.equal(r.get(2)?.role, 'standby');
  assert.ok(!r.list().some((m) => m.id === 2));
});

test("a voter removed without a policy context leaves the registry (etcd's MemberRemove)", () => {
  const r = founders();
  r.applyCommand({ kind: 'set-standby', id: 3, mode: 'warm', snapshotEveryMs: 60_000 });
  r.applyConfState(conf([1, 2]), 3, null);
  assert.equal(r.get(3), undefined);
});

test('commands that need a membership change, or do not fit, are refused with typed errors', () => {
  const r = founders();
  r.applyConfState(conf([1, 2, 3], [4]), 4, null);
  const refused = (c: RegistryCommand, code: string) =>
    assert.throws(
      () => r.applyCommand(c),
      (e: unknown) => e instanceof RegistryError && e.code === code,
    );
  refused({ kind: 'set-role', id: 2, role: 'replica' }, 'NEEDS_CONF_CHANGE');
  refused({ kind: 'set-role', id: 4, role: 'voter' }, 'NEEDS_CONF_CHANGE');
  refused({ kind: 'remove', id: 4 }, 'NEEDS_CONF_CHANGE');
  refused({ kind: 'record-promotion', id: 4, atMs: 1 }, 'NEEDS_CONF_CHANGE');
  refused({ kind: 'set-zone', id: 9, zone: 'a' }, 'UNKNOWN_MEMBER');
  refused({ kind: 'set-zone', id: 2, zone: 'z'.repeat(64) }, 'BAD_REGISTRY_COMMAND');
  refused(
    { kind: 'set-standby', id: 2, mode: 'warm', snapshotEveryMs: 10 },
    'BAD_REGISTRY_COMMAND',
  );
  const hot = {
    kind: 'register',
    id: 8,
    name: 'n8',
    peerUrls: ['h:1'],
    clientUrls: [],
    zone: '',
    mode: 'hot',
    snapshotEveryMs: 60_000,
  } as const;
  refused(hot, 'NEEDS_CONF_CHANGE');
  refused({ ...hot, id: 2, mode: 'cold' }, 'MEMBER_EXISTS');
  const before = r.all();
  r.applyCommand({ kind: 'set-role', id: 4, role: 'replica' });
  assert.notDeepEqual(r.all(), before);
  assert.equal(r.get(4)?.role, 'replica');
});

const arbCommand: fc.Arbitrary<RegistryCommand> = (() => {
  const id = fc.integer({ min: 1, max: 2 ** 40 });
  const ms = fc.integer({ min: 0, max: 2 ** 45 });
  const mode = fc.constantFrom('hot', 'warm', 'cold' as const);
  const every = fc.integer({ min: 1000, max: 24 * 3600_000 });
  const zone = fc.string({ maxLength: 63 });
  const urls = fc.array(fc.string({ maxLength: 20 }), { minLength: 1, maxLength: 8 });
  return fc.oneof(
    fc.record({
      kind: fc.constant('register' as const),
      id,
      name: fc.string({ maxLength: 30 }),
      peerUrls: urls,
      clientUrls: fc.array(fc.string(), { maxLength: 8 }),
      zone,
      mode,
      snapshotEveryMs: every,
    }),
    fc.record({
      kind: fc.constant('set-role' as const),
      id,
      role: fc.constantFrom('voter', 'replica', 'standby' as const),
    }),
    fc.record({ kind: fc.constant('set-standby' as const), id, mode, snapshotEveryMs: every }),
    fc.record({ kind: fc.constant('set-zone' as const), id, zone }),
    fc.record({ kind: fc.constant('record-promotion' as const), id, atMs: ms }),
    fc.record({
      kind: fc.constant('record-promotion' as const),
      id,
      atMs: ms,
      byPolicy: fc.constant(true),
    }),
    fc.record({
      kind: fc.constant('record-demotion' as const),
      id,
      atMs: ms,
      role: fc.constantFrom('standby', 'replica' as const),
    }),
    fc.record({
      kind: fc.constant('record-health' as const),
      id,
      health: fc.constantFrom('healthy', 'lagging', 'unreachable' as const),
      sinceMs: ms,
    }),
    fc.record({ kind: fc.constant('remove' as const), id }),
    fc.record({ kind: fc.constant('record-refresh' as const), id, atMs: ms }),
  );
})();

test('every registry command round-trips through its encoding', () => {
  fc.assert(
    fc.property(arbCommand, (c) => {
      assert.deepEqual(decodeRegistryCommand(encodeRegistryCommand(c)), { ...c });
    }),
  );
});

test('bytes that are not a command are refused with a RegistryError, never anything else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      try {
        decodeRegistryCommand(bytes);
      } catch (e) {
        assert.ok(e instanceof RegistryError, String(e));
      }
    }),
  );
  assert.throws(
    () => decodeRegistryCommand(new Uint8Array([0x93, 0x01, 0x63, 0x01])),
    RegistryError,
  );
});

const warmStandby = (r: MemberRegistry, id: number): void =>
  r.applyCommand({
    kind: 'register',
    id,
    name: `n${id}`,
    peerUrls: [`w${id}:1`],
    clientUrls: [],
    zone: 'a',
    mode: 'warm',
    snapshotEveryMs: 30_000,
  });

test('record-refresh: written as version 2, every older kind still as version 1', () => {
  const refresh = encodeRegistryCommand({ kind: 'record-refresh', id: 5, atMs: 1_700_000_000_000 });
  assert.deepEqual(unpack(refresh), [2, 9, 5, 1_700_000_000_000]);
  const health = { kind: 'record-health', id: 5, health: 'lagging', sinceMs: 7 } as const;
  // Byte for byte what a version-1 member wrote (and reads): a mixed cluster keeps working.
  assert.deepEqual(encodeRegistryCommand(health), pack([1, 7, 5, 'lagging', 7]));
  assert.deepEqual(decodeRegistryCommand(pack([1, 7, 5, 'lagging', 7])), health);
  // Kind 9 under version 1 is not something a version-1 member could have written.
  assert.throws(() => decodeRegistryCommand(pack([1, 9, 5, 10])), /unknown registry command 9/);
  assert.throws(() => decodeRegistryCommand(pack([3, 7, 5, 'lagging', 7])), /version 3 is newer/);
  assert.throws(
    () => decodeRegistryCommand(pack([2, 9, 5, -1])),
    (e: unknown) => e instanceof RegistryError && e.code === 'BAD_REGISTRY_COMMAND',
  );
  // Change contexts stay version 1 (an older member must apply them): no refresh record in one.
  assert.throws(
    () => encodeChangeContext({ atMs: 1, commands: [{ kind: 'record-refresh', id: 5, atMs: 1 }] }),
    /record-refresh in a change context/,
  );
  const ctx = { atMs: 1, commands: [{ kind: 'set-zone', id: 5, zone: 'b' } as const] };
  assert.deepEqual(unpack(encodeChangeContext(ctx))[1], 1);
  assert.deepEqual(decodeChangeContext(encodeChangeContext(ctx)), ctx);
});

test('record-refresh applies to warm standbys only, never moves backwards, survives snapshots', () => {
  const r = founders();
  warmStandby(r, 5);
  assert.equal(r.get(5)!.lastRefreshAtMs, null);
  r.applyCommand(
    decodeRegistryCommand(encodeRegistryCommand({ kind: 'record-refresh', id: 5, atMs: 2000 })),
  );
  assert.equal(r.get(5)!.lastRefreshAtMs, 2000);
  // A record that lost a race with a newer one (two leaders' clocks) is older news.
  r.applyCommand({ kind: 'record-refresh', id: 5, atMs: 1500 });
  assert.equal(r.get(5)!.lastRefreshAtMs, 2000);
  const refused = (id: number) => (e: unknown) =>
    e instanceof RegistryError && e.code === 'NEEDS_CONF_CHANGE' && e.message.includes(`${id}`);
  assert.throws(() => r.applyCommand({ kind: 'record-refresh', id: 1, atMs: 3000 }), refused(1));
  assert.throws(
    () => r.applyCommand({ kind: 'record-refresh', id: 42, atMs: 3000 }),
    (e: unknown) => e instanceof RegistryError && e.code === 'UNKNOWN_MEMBER',
  );
  const snapshot = r.toSnapshot() as { version: number; members: unknown[][] };
  assert.equal(snapshot.version, 4);
  const copy = MemberRegistry.fromSnapshot(unpack(pack(snapshot)));
  assert.deepEqual(copy.all(), r.all());
  assert.equal(copy.get(5)!.lastRefreshAtMs, 2000);
  // A version 2 snapshot (rows of 14, before the field) reads with no refresh recorded.
  const v2 = { version: 2, members: snapshot.members.map((row) => row.slice(0, 14)) };
  const old = MemberRegistry.fromSnapshot(v2);
  assert.deepEqual(
    old.all().map((m) => [m.id, m.role, m.standbyMode, m.lastRefreshAtMs]),
    [
      [1, 'voter', 'hot', null],
      [2, 'voter', 'hot', null],
      [3, 'voter', 'hot', null],
      [5, 'standby', 'warm', null],
    ],
  );
});

test("promotedByPolicy: set by the policy's recorded promotion, cleared by any demotion, never by an operator's", () => {
  const r = founders();
  r.applyConfState(conf([1, 2, 3], [4, 5]), 4, { name: 'n4', peerUrls: ['d:1'], clientUrls: [] });
  r.applyConfState(conf([1, 2, 3], [4, 5]), 5, { name: 'n5', peerUrls: ['e:1'], clientUrls: [] });
  const policyPromotion = (id: number) => ({
    transition: ConfChangeTransition.Auto,
    changes: [{ type: ConfChangeType.AddNode, nodeId: id }],
    context: encodeChangeContext({
      atMs: 900,
      commands: [{ kind: 'record-promotion', id, atMs: 900, byPolicy: true }],
    }),
  });
  r.applyConfChange(conf([1, 2, 3, 4], [5]), policyPromotion(4));
  // etcd's MemberPromote: no policy context.
  const etcdPromote = {
    transition: ConfChangeTransition.Auto,
    changes: [{ type: ConfChangeType.AddNode, nodeId: 5 }],
    context: new Uint8Array(),
  };
  r.applyConfChange(conf([1, 2, 3, 4, 5]), etcdPromote);
  const flags = () => r.all().map((m) => [m.id, m.role, m.promotedByPolicy]);
  assert.deepEqual(flags(), [
    [1, 'voter', false],
    [2, 'voter', false],
    [3, 'voter', false],
    [4, 'voter', true],
    [5, 'voter', false],
  ]);
  // Survives a snapshot; a version 3 snapshot (rows of 15) reads every voter as an operator's.
  const snapshot = r.toSnapshot() as { version: number; members: unknown[][] };
  assert.deepEqual(MemberRegistry.fromSnapshot(unpack(pack(snapshot))).all(), r.all());
  const v3 = { version: 3, members: snapshot.members.map((row) => row.slice(0, 15)) };
  assert.deepEqual(
    MemberRegistry.fromSnapshot(v3)
      .all()
      .map((m) => m.promotedByPolicy),
    [false, false, false, false, false],
  );
  // Demoted (the trim, through joint consensus): no longer the policy's voter.
  r.applyConfChange(
    conf([1, 2, 3, 5], [], { votersOutgoing: [1, 2, 3, 4, 5], learnersNext: [4] }),
    {
      transition: ConfChangeTransition.JointImplicit,
      changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: 4 }],
      context: encodeChangeContext({
        atMs: 950,
        commands: [{ kind: 'record-demotion', id: 4, atMs: 950, role: 'standby' }],
      }),
    },
  );
  assert.deepEqual([r.get(4)?.role, r.get(4)?.promotedByPolicy], ['standby', false]);
});

test('record-promotion: byPolicy round-trips; an operator promotion encodes as before the field', () => {
  const operator: RegistryCommand = { kind: 'record-promotion', id: 4, atMs: 5 };
  const policy: RegistryCommand = { kind: 'record-promotion', id: 4, atMs: 5, byPolicy: true };
  assert.deepEqual(unpack(encodeRegistryCommand(operator)), [1, 5, 4, 5]);
  assert.deepEqual(decodeRegistryCommand(encodeRegistryCommand(policy)), policy);
  assert.deepEqual(decodeRegistryCommand(encodeRegistryCommand(operator)), operator);
  assert.throws(
    () => decodeRegistryCommand(pack([1, 5, 4, 5, 'yes'])),
    (e: unknown) => e instanceof RegistryError && e.code === 'BAD_REGISTRY_COMMAND',
  );
});

test('a member the configuration adds (member add) is recorded catching up: a new leader does not trust it unheard', () => {
  const r = founders();
  r.applyConfChange(conf([1, 2, 3, 4]), {
    transition: ConfChangeTransition.Auto,
    changes: [{ type: ConfChangeType.AddNode, nodeId: 4 }],
    context: encodeAttributes({ name: '', peerUrls: ['d:1'], clientUrls: [] }),
  });
  assert.deepEqual([r.get(4)?.role, r.get(4)?.health], ['voter', 'lagging']);
  assert.equal(r.get(1)?.health, 'healthy', 'founders are recorded healthy');
  // A leader elected now seeds its detector from the record: n4 is not healthy until heard.
  const d = new FailureDetector({ silentAfterMs: 1_000, lagEntriesMax: 100, stabilityMs: 5_000 });
  d.seed(r.all(), 10_000);
  d.observe(10_000, 50, [
    { id: 1, lastHeardMs: 10_000, match: 50 },
    { id: 4, lastHeardMs: null, match: 0 },
  ]);
  assert.equal(d.get(4)?.state, 'lagging');
});

test('removed members are remembered (etcd members_removed), bounded, and survive a snapshot', () => {
  const r = founders();
  const addLearner = (id: number) =>
    r.applyConfChange(conf([1, 2, 3], [id]), {
      transition: ConfChangeTransition.Auto,
      changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: id }],
      context: encodeAttributes({ name: `n${id}`, peerUrls: [`x:${id}`], clientUrls: [] }),
    });
  const remove = (id: number) =>
    r.applyConfChange(conf([1, 2, 3]), {
      transition: ConfChangeTransition.Auto,
      changes: [{ type: ConfChangeType.RemoveNode, nodeId: id }],
      context: new Uint8Array(),
    });
  addLearner(9);
  assert.deepEqual(r.removedIds(), []);
  remove(9);
  assert.deepEqual(r.removedIds(), [9]);
  assert.equal(r.get(9), undefined);
  // A warm standby removed by its command is removed too; one that merely leaves the
  // configuration (warm, cold) stays registered and is not.
  r.applyCommand({
    kind: 'register',
    id: 11,
    name: 'n11',
    peerUrls: ['z:1'],
    clientUrls: [],
    zone: '',
    mode: 'warm',
    snapshotEveryMs: 30_000,
  });
  r.applyCommand({ kind: 'remove', id: 11 });
  assert.deepEqual(r.removedIds(), [9, 11]);
  // The snapshot carries the list (msgpack, as stored); an id registered again leaves it.
  const copy = MemberRegistry.fromSnapshot(unpack(pack(r.toSnapshot())));
  assert.deepEqual(copy.removedIds(), [9, 11]);
  addLearner(9);
  assert.deepEqual(r.removedIds(), [11]);
  // A version 4 snapshot written before the list existed still loads, with none removed.
  const { version, members } = r.toSnapshot() as { version: number; members: unknown[] };
  assert.equal(version, 4);
  const old = MemberRegistry.fromSnapshot({ version, members });
  assert.deepEqual(old.all(), r.all());
  assert.deepEqual(old.removedIds(), []);
  // Bounded: the oldest are forgotten first.
  for (let id = 100; id < 100 + REMOVED_IDS_MAX + 5; id++) {
    addLearner(id);
    remove(id);
  }
  assert.equal(r.removedIds().length, REMOVED_IDS_MAX);
  assert.equal(r.removedIds()[0], 105);
  assert.equal(r.removedIds().at(-1), 100 + REMOVED_IDS_MAX + 4);
  assert.throws(() => MemberRegistry.fromSnapshot({ version, members, removed: [-1] }), /removed/);
});
