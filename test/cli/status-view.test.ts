/**
 * `tandem status` rendering (src/cli/status.ts statusRows, formatStatusTable) from crafted
 * /status answers: a pure function test. Roles, modes and learner flags come from the leader's
 * registry when a leader answers (a standby's own copy can be stale), and the table says whose.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type AdminStatus,
  formatStatusTable,
  type StatusAnswer,
  statusRows,
} from '../../src/cli/status.js';

type Entry = NonNullable<AdminStatus['registry']>[number];
const entry = (id: string, role: string, standbyMode: string, isLearner: boolean): Entry => ({
  id,
  name: `n${id}`,
  role,
  standbyMode,
  zone: 'z1',
  isLearner,
  health: 'healthy',
});

/** The current registry: n4 was promoted (voter), n2 demoted to a warm standby (outside Raft). */
const LEADER_REGISTRY = [
  entry('1', 'voter', 'hot', false),
  entry('2', 'standby', 'warm', false),
  entry('3', 'voter', 'hot', false),
  entry('4', 'voter', 'hot', false),
];
/** n2's own copy, from before both changes (it was outside the configuration meanwhile). */
const STALE_REGISTRY = [
  entry('1', 'voter', 'hot', false),
  entry('2', 'voter', 'hot', false),
  entry('3', 'voter', 'hot', false),
  entry('4', 'standby', 'hot', true),
];

function status(id: string, more: Partial<AdminStatus>): AdminStatus {
  return {
    name: `n${id}`,
    memberId: id,
    leader: '1',
    isLeader: false,
    term: 7,
    commitIndex: 100,
    appliedIndex: 100,
    revision: 40,
    zone: 'z1',
    members: LEADER_REGISTRY.filter((m) => m.role === 'voter').map((m) => ({
      id: m.id,
      name: m.name!,
      isLearner: false,
    })),
    registry: LEADER_REGISTRY,
    ...more,
  };
}

const answer = (s: AdminStatus | null, endpoint = `127.0.0.1:1${s?.memberId ?? 9}`) =>
  ({ endpoint, status: s, error: s === null ? 'connect ECONNREFUSED' : null }) as StatusAnswer;

// n2 reports its own stale view: a voter, in its (stale) etcd member list as a voter.
const n2Stale = status('2', {
  appliedIndex: 60,
  role: 'voter',
  standbyMode: 'hot',
  members: STALE_REGISTRY.filter((m) => m.role === 'voter' || m.isLearner).map((m) => ({
    id: m.id,
    name: m.name!,
    isLearner: m.isLearner!,
  })),
  registry: STALE_REGISTRY,
});

test("with a leader answering, every member's role and learner flag are the leader's", () => {
  const rows = statusRows([
    answer(status('1', { isLeader: true, role: 'voter' })),
    answer(n2Stale),
    answer(status('4', { role: 'standby', standbyMode: 'hot' })), // not caught up on its promotion
  ]);
  assert.deepEqual(
    rows.map((r) => [r.name, r.role, r.standbyMode, r.isLearner, r.lag, r.roleView]),
    [
      ['n1', 'voter', 'hot', false, 0, 'leader n1'],
      ['n2', 'standby', 'warm', false, 40, 'leader n1'],
      ['n4', 'voter', 'hot', false, 0, 'leader n1'],
    ],
  );
  const lines = formatStatusTable(rows).trimEnd().split('\n');
  assert.equal(lines.length, 5);
  assert.equal(lines[4], "roles: leader n1's registry");
  assert.match(lines[2]!, /^n2\s+2\s+standby\s+warm\s/);
});

test('without a leader, each member speaks for itself and the table says it may be stale', () => {
  const rows = statusRows([answer(n2Stale), answer(null)]);
  assert.deepEqual(
    rows.map((r) => [r.name, r.role, r.isLearner, r.roleView, r.error]),
    [
      ['n2', 'voter', false, 'own', null],
      ['?', 'unreachable', false, '', 'connect ECONNREFUSED'],
    ],
  );
  const last = formatStatusTable(rows).trimEnd().split('\n').at(-1);
  assert.equal(
    last,
    "roles: each member's own registry (no leader answered: a standby's may be stale)",
  );
});

test("the highest-term leader's view wins; a member it does not know keeps its own", () => {
  const deposed = status('3', { isLeader: true, term: 6, registry: STALE_REGISTRY });
  // n9 joined after the leader's registry was read (or was removed): not in it.
  const n9 = status('9', { role: 'standby', standbyMode: 'cold', members: [] });
  const rows = statusRows([
    answer(deposed),
    answer(status('1', { isLeader: true, term: 7 })),
    answer(status('4', { role: 'standby' })),
    answer(n9),
  ]);
  assert.deepEqual(
    rows.map((r) => [r.name, r.role, r.standbyMode, r.isLearner, r.roleView]),
    [
      ['n3', 'voter', 'hot', false, 'leader n1'],
      ['n1', 'voter', 'hot', false, 'leader n1'],
      ['n4', 'voter', 'hot', false, 'leader n1'],
      ['n9', 'standby', 'cold', true, 'own'],
    ],
  );
  const last = formatStatusTable(rows).trimEnd().split('\n').at(-1);
  assert.equal(last, "roles: leader n1's registry; n9: own registry (not in the leader's)");
});

test("a member that does not answer is named from the leader's registry when only it is missing", () => {
  const registry = LEADER_REGISTRY.map((m) => (m.id === '3' ? { ...m, health: 'failed' } : m));
  const leader = status('1', { isLeader: true, registry });
  const rows = statusRows([
    answer(leader),
    answer(status('2', {})),
    answer(null, '127.0.0.1:13'),
    answer(status('4', {})),
  ]);
  assert.deepEqual(
    [rows[2]!.name, rows[2]!.memberId, rows[2]!.health, rows[2]!.role],
    ['n3', '3', 'failed', 'unreachable'],
  );
  assert.match(formatStatusTable(rows).split('\n')[3]!, /^n3\s+3\s+unreachable \(connect/);
  // Two silent endpoints and two silent members: which is which is unknown, so neither is named.
  const two = statusRows([answer(leader), answer(null, 'a:1'), answer(null, 'b:1')]);
  assert.deepEqual(
    two.map((r) => r.name),
    ['n1', '?', '?'],
  );
});
