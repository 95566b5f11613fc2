/**
 * Member mode (src/sim/member-host.ts): the production member loop with the KV state machine on
 * simulated I/O. Same seed, same run; the client-visible checks can fail (a raft bug and two
 * faults injected in the simulated I/O are each caught); and the member-loop finding #7 stays
 * fixed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BugName } from '../../src/raft/types.js';
import type { InvariantName } from '../../src/sim/checker.js';
import type { SimFault } from '../../src/sim/member-io.js';
import { runSeed, runSeeds } from '../../src/sim/simulator.js';
import { leaderOf, proposeText, restartMember, startCluster } from '../server/harness.js';

const SEEDS_MAX = 2000;

test('member mode: the same seed gives the same trace hash and the same run', () => {
  for (const seed of [0, 1, 2, 31337]) {
    const a = runSeed({ seed, member: true });
    const b = runSeed({ seed, member: true });
    assert.equal(a.failure, null, `seed ${seed}: ${a.failure?.message}`);
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} replayed differently`);
    assert.deepEqual(
      [a.steps, a.messagesSent, a.virtualMs, a.writesAcked, a.readsServed, a.crashes, a.checks],
      [b.steps, b.messagesSent, b.virtualMs, b.writesAcked, b.readsServed, b.crashes, b.checks],
    );
    assert.match(a.paramsLine, / mode=member /);
    assert.ok(a.writesAcked > 0 && a.readsServed > 0, `seed ${seed}: no client traffic`);
    assert.notEqual(a.traceHash, runSeed({ seed }).traceHash, 'member mode ran the raw host');
  }
  const traced = runSeed({ seed: 7, member: true, trace: true });
  assert.equal(traced.traceHash, runSeed({ seed: 7, member: true }).traceHash);
  assert.match(traced.traceLines!.join('\n'), /client: put k\d=v\d+ at n\d: ok/);
});

const CAUGHT: readonly {
  readonly name: string;
  readonly bug?: BugName;
  readonly fault?: SimFault;
  readonly expected: readonly InvariantName[];
}[] = [
  // The leader answers ReadIndex from its commit index without confirming its leadership.
  { name: 'raft bug stale-read', bug: 'stale-read', expected: ['linearizable-read'] },
  // A put is acknowledged once the member took it, before it is committed and applied.
  {
    name: 'fault ack-before-apply',
    fault: 'ack-before-apply',
    expected: ['linearizable-read', 'acked-write-lost'],
  },
  // Persistence reports durable at once: messages leave and entries apply before the write.
  {
    name: 'fault send-before-persist',
    fault: 'send-before-persist',
    expected: ['state-machine-safety', 'committed-stable', 'acked-write-lost'],
  },
];

for (const c of CAUGHT) {
  test(`member mode: ${c.name} is caught within ${SEEDS_MAX} seeds`, () => {
    const summary = runSeeds({
      seeds: SEEDS_MAX,
      member: true,
      stopAtFirst: true,
      ...(c.bug === undefined ? {} : { bug: c.bug }),
      ...(c.fault === undefined ? {} : { fault: c.fault }),
    });
    const failure = summary.failures[0];
    assert.ok(failure !== undefined, `${c.name} survived ${SEEDS_MAX} seeds`);
    const f = failure.failure!;
    assert.notEqual(f.kind, 'crash', `seed ${failure.seed} crashed the simulator: ${f.message}`);
    assert.ok(
      c.expected.includes(f.invariant!),
      `${c.name} was caught at seed ${failure.seed} by ${f.invariant}: ${f.message}`,
    );
    const clean = runSeeds({ seeds: 1, start: failure.seed, member: true });
    assert.equal(clean.failures.length, 0, `seed ${failure.seed} fails without ${c.name} too`);
  });
}

test('FINDINGS #7: a restarted member never takes an earlier incarnation entry for its own proposal', async () => {
  const c = startCluster(3, 5);
  c.clock.advance(2000);
  const leader = leaderOf(c);
  assert.ok(leader !== undefined, 'no leader');
  const follower = [...c.members.values()].find((m) => m !== leader)!;
  // Incarnation 1 proposes A; the forwarded proposal reaches the leader, then the process dies.
  const a = proposeText(follower, 'A').catch(() => 'failed');
  c.clock.advance(3);
  follower.stop(() => {});
  // Incarnation 2 proposes B while A is being committed: B must resolve with B's own result.
  const restarted = restartMember(c, follower.id);
  const b = proposeText(restarted, 'B');
  c.clock.advance(2000);
  assert.equal(await a, 'failed');
  assert.equal(await b, 'ok:B');
  assert.deepEqual(c.machines.get(follower.id)!.commands.slice(-2), ['A', 'B']);
});
