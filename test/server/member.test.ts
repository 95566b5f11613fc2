import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryStorage } from '../../src/raft/storage.js';
import { MessageType } from '../../src/raft/types.js';
import { ServerError } from '../../src/server/errors.js';
import { COMMAND_BYTES_MAX, PROPOSALS_PENDING_MAX } from '../../src/server/member.js';
import {
  ListStateMachine,
  leaderOf,
  newMember,
  proposeText,
  restartMember,
  startCluster,
  VirtualPersistence,
} from './harness.js';

function settle<T>(p: Promise<T>): { value?: T; error?: unknown; done: boolean } {
  const box: { value?: T; error?: unknown; done: boolean } = { done: false };
  p.then(
    (v) => Object.assign(box, { value: v, done: true }),
    (e) => Object.assign(box, { error: e, done: true }),
  );
  return box;
}
const flush = () => new Promise((r) => setImmediate(r));

test('a 3-member cluster elects a leader and every member applies the same commands', async () => {
  const c = startCluster(3);
  c.clock.advance(1000);
  const leader = leaderOf(c);
  assert.ok(leader, 'a leader within 1 s of virtual time');
  const results = ['a', 'b', 'c'].map((t) => settle(proposeText(leader, t)));
  c.clock.advance(200);
  await flush();
  assert.deepEqual(
    results.map((r) => r.value),
    ['ok:a', 'ok:b', 'ok:c'],
  );
  for (const sm of c.machines.values()) assert.deepEqual(sm.commands, ['a', 'b', 'c']);
});

test('a proposal on a follower is forwarded and resolves when applied on that follower', async () => {
  const c = startCluster(3, 7);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  const follower = [...c.members.values()].find((m) => m !== leader)!;
  const r = settle(proposeText(follower, 'from-follower'));
  c.clock.advance(200);
  await flush();
  assert.equal(r.value, 'ok:from-follower');
  assert.ok(c.machines.get(follower.id)!.commands.includes('from-follower'));
});

test('with no quorum a proposal fails within the request timeout instead of hanging', async () => {
  const c = startCluster(3, 3);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  for (const m of c.members.values()) if (m !== leader) c.hub.cut.add(m.id);
  const r = settle(proposeText(leader, 'lost'));
  c.clock.advance(3000);
  await flush();
  assert.ok(r.done, 'settled');
  assert.ok(r.error instanceof ServerError);
  assert.match((r.error as ServerError).code, /^(TIMEOUT|TIMEOUT_LEADER_FAIL|NO_LEADER)$/);
});

test('messages leave only after their Ready is durable: a stuck disk sends no vote', () => {
  const c = startCluster(3, 5);
  // Member 1's disk never completes: it may campaign (a pre-vote asserts nothing durable), but
  // no vote request, which carries the new term it must persist first, may leave it.
  const p1 = c.persistence.get(1)!;
  p1.save = () => {};
  const sentBy1: number[] = [];
  const h2 = c.hub.handlers.get(2)!;
  const h3 = c.hub.handlers.get(3)!;
  c.hub.handlers.set(2, (m) => {
    if (m.from === 1) sentBy1.push(m.type);
    h2(m);
  });
  c.hub.handlers.set(3, (m) => {
    if (m.from === 1) sentBy1.push(m.type);
    h3(m);
  });
  c.members.get(1)!.campaign();
  c.clock.advance(3000);
  // Pre-votes and their answers assert nothing durable; nothing else left member 1.
  assert.deepEqual(
    sentBy1.filter((t) => t !== MessageType.PreVote && t !== MessageType.PreVoteResp),
    [],
    'only pre-vote traffic left member 1',
  );
  const leader = leaderOf(c);
  assert.ok(leader !== undefined && leader.id !== 1, 'the others elect a leader among themselves');
});

test('the messages of a Ready are on the wire before its write and its apply (Network.flush)', async () => {
  const c = startCluster(3, 11);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  const follower = [...c.members.values()].find((m) => m !== leader)!;
  // At every write and every apply, on every member: how many sends still wait for the turn.
  const waitingAt: { member: number; at: 'save' | 'apply'; sends: number }[] = [];
  for (const [id, p] of c.persistence) {
    const save = p.save.bind(p);
    p.save = (request, done) => {
      waitingAt.push({ member: id, at: 'save', sends: c.hub.unflushedSends.get(id) ?? 0 });
      save(request, done);
    };
    const sm = c.machines.get(id)!;
    const apply = sm.apply.bind(sm);
    sm.apply = (ctx, command) => {
      waitingAt.push({ member: id, at: 'apply', sends: c.hub.unflushedSends.get(id) ?? 0 });
      return apply(ctx, command);
    };
  }
  const results = [settle(proposeText(leader, 'x')), settle(proposeText(follower, 'y'))];
  c.clock.advance(200);
  await flush();
  assert.deepEqual(
    results.map((r) => r.value),
    ['ok:x', 'ok:y'],
  );
  assert.ok(waitingAt.some((w) => w.member === leader.id && w.at === 'save'));
  assert.ok(waitingAt.some((w) => w.member === leader.id && w.at === 'apply'));
  assert.deepEqual(
    waitingAt.filter((w) => w.sends > 0),
    [],
    'appends, commit indexes and acks were flushed before each write and apply',
  );
});

test('a linearizable read on a cut-off old leader never returns; on the new leader it sees acked writes', async () => {
  const c = startCluster(3, 11);
  c.clock.advance(1000);
  const old = leaderOf(c)!;
  c.hub.cut.add(old.id);
  const stale = settle(new Promise((res, rej) => old.readBarrier((e, i) => (e ? rej(e) : res(i)))));
  c.clock.advance(1500);
  const fresh = leaderOf(c);
  assert.ok(fresh !== undefined && fresh.id !== old.id);
  const w = settle(proposeText(fresh, 'after-failover'));
  c.clock.advance(200);
  await flush();
  assert.equal(w.value, 'ok:after-failover');
  const writeIndex = fresh.appliedIndex;
  const read = settle(
    new Promise<number>((res, rej) => fresh.readBarrier((e, i) => (e ? rej(e) : res(i!)))),
  );
  c.clock.advance(200);
  await flush();
  assert.ok((read.value ?? 0) >= writeIndex, `read index ${read.value} >= write ${writeIndex}`);
  assert.ok(c.machines.get(fresh.id)!.commands.includes('after-failover'));
  c.clock.advance(1000);
  await flush();
  assert.ok(stale.error instanceof ServerError, 'the stale read failed rather than answered');
});

test('a failed save stops the member and fails what waits with STOPPED', async () => {
  const c = startCluster(3, 13);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  c.persistence.get(leader.id)!.failNext = new Error('fdatasync: EIO');
  const r = settle(proposeText(leader, 'x'));
  c.clock.advance(100);
  await flush();
  assert.equal(leader.running, false);
  assert.ok(r.error instanceof ServerError && r.error.code === 'STOPPED');
});

test('snapshots compact the log, and a member that was cut off catches up by snapshot', async () => {
  const c = startCluster(3, 17, 10);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  const lagging = [...c.members.values()].find((m) => m !== leader)!;
  c.hub.cut.add(lagging.id);
  for (let i = 0; i < 60; i++) {
    void proposeText(leader, `k${i}`).catch(() => {});
    c.clock.advance(20);
  }
  c.clock.advance(500);
  assert.equal(c.machines.get(leader.id)!.commands.length, 60);
  const leaderStorage = (leader as unknown as { storage: { firstIndex(): number } }).storage;
  assert.ok(
    leaderStorage.firstIndex() > 40,
    `log compacted (first index ${leaderStorage.firstIndex()})`,
  );
  const lagSm = c.machines.get(lagging.id)!;
  let restored = 0;
  const restore = lagSm.restore.bind(lagSm);
  lagSm.restore = (snap) => {
    restored++;
    restore(snap);
  };
  c.hub.cut.delete(lagging.id);
  c.clock.advance(2000);
  await flush();
  assert.ok(restored >= 1, 'caught up through a snapshot');
  assert.deepEqual(c.machines.get(lagging.id)!.commands, c.machines.get(leader.id)!.commands);
});

test('an added learner gets one fresh snapshot: retries while it is being made pack no other', async () => {
  const c = startCluster(3, 29, 10);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  for (let i = 0; i < 30; i++) {
    void proposeText(leader, `k${i}`).catch(() => {});
    c.clock.advance(20);
  }
  c.clock.advance(500);
  // The leader's snapshot predates the learner: a fresh one is packed, a slice per 20 ms over
  // 500 ms (a large state), so raft retries the learner many times meanwhile.
  const sm = c.machines.get(leader.id)!;
  let packs = 0;
  type Schedule = (next: (go: boolean) => void) => void;
  const snapshotInSlices = (schedule: Schedule, done: (data: Uint8Array) => void) => {
    packs++;
    const data = sm.snapshot(); // the state as of now, as a read view would hold it
    let slices = 0;
    const slice = (go: boolean): void => {
      if (!go) return;
      if (++slices === 25) done(data);
      else c.clock.setTimeout(() => schedule(slice), 20);
    };
    schedule(slice);
  };
  Object.assign(sm, { snapshotInSlices });
  const learnerSm = new ListStateMachine();
  const learner = newMember(
    c,
    4,
    new MemoryStorage(),
    learnerSm,
    new VirtualPersistence(c.clock),
    5,
    10,
  );
  c.members.set(4, learner);
  c.machines.set(4, learnerSm);
  learner.start();
  const added = settle(
    new Promise((res, rej) =>
      leader.proposeConfChange(
        { transition: 0, changes: [{ type: 2, nodeId: 4 }], context: new Uint8Array() },
        (e, v) => (e ? rej(e) : res(v)),
      ),
    ),
  );
  // An entry applied while the fresh snapshot is packed (a live cluster always has some): the
  // leader's snapshot is then behind its applied index again when a retry asks for another.
  for (let t = 0; t < 3000 && learnerSm.commands.length < 31; t += 50) {
    if (t === 200) void proposeText(leader, 'during the pack').catch(() => {});
    c.clock.advance(50);
    await flush();
  }
  assert.ok(added.done && added.error === undefined, `learner added: ${String(added.error)}`);
  assert.deepEqual(learnerSm.commands, sm.commands, 'the learner caught up by the snapshot');
  c.clock.advance(1000);
  await flush();
  assert.equal(packs, 1, 'one snapshot packed for the learner');
});

test('the leader packs a snapshot listing an added member before that member first speaks', async () => {
  const c = startCluster(3, 31, 10);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  for (let i = 0; i < 30; i++) {
    void proposeText(leader, `k${i}`).catch(() => {});
    c.clock.advance(20);
  }
  c.clock.advance(500);
  const sm = c.machines.get(leader.id)!;
  let packs = 0;
  const packed: number[] = [];
  type Schedule = (next: (go: boolean) => void) => void;
  const snapshotInSlices = (schedule: Schedule, done: (data: Uint8Array) => void) => {
    packs++;
    const data = sm.snapshot();
    packed.push(sm.appliedIndex());
    schedule((go) => go && done(data));
  };
  Object.assign(sm, { snapshotInSlices });
  // `member add` first; the new member's process is not running yet (nothing answers for 4).
  const added = settle(
    new Promise((res, rej) =>
      leader.proposeConfChange(
        { transition: 0, changes: [{ type: 2, nodeId: 4 }], context: new Uint8Array() },
        (e, v) => (e ? rej(e) : res(v)),
      ),
    ),
  );
  for (let t = 0; t < 2000 && !(added.done && packs > 0); t += 50) {
    c.clock.advance(50);
    await flush();
  }
  assert.ok(added.done && added.error === undefined, `learner added: ${String(added.error)}`);
  assert.equal(packs, 1, 'a snapshot was packed for the added member before it spoke');
  // It lists the learner: the leader's stored snapshot is at or after the add.
  assert.deepEqual(leader.status().config.learners, [4]);
  // The member starts now and catches up by that snapshot, with no second pack.
  const learnerSm = new ListStateMachine();
  const learner = newMember(
    c,
    4,
    new MemoryStorage(),
    learnerSm,
    new VirtualPersistence(c.clock),
    5,
    10,
  );
  c.members.set(4, learner);
  c.machines.set(4, learnerSm);
  learner.start();
  for (let t = 0; t < 3000 && learnerSm.commands.length < sm.commands.length; t += 50) {
    c.clock.advance(50);
    await flush();
  }
  assert.deepEqual(learnerSm.commands, sm.commands, 'the learner caught up by the snapshot');
  assert.equal(packs, 1, 'no second pack for the learner');
});

test('stop fails pending proposals with STOPPED and completes', async () => {
  const c = startCluster(3, 19);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  for (const m of c.members.values()) if (m !== leader) c.hub.cut.add(m.id);
  const r = settle(proposeText(leader, 'pending'));
  let stopped = false;
  leader.stop(() => {
    stopped = true;
  });
  c.clock.advance(100);
  await flush();
  assert.ok(stopped);
  assert.ok(r.error instanceof ServerError && r.error.code === 'STOPPED');
});

test('a restart re-applies membership changes the durable state machine already holds', async () => {
  const c = startCluster(3, 23);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  const added = settle(
    new Promise((res, rej) =>
      leader.proposeConfChange(
        { transition: 0, changes: [{ type: 2, nodeId: 4 }], context: new Uint8Array() },
        (e, v) => (e ? rej(e) : res(v)),
      ),
    ),
  );
  c.clock.advance(300);
  await flush();
  assert.ok(added.done && added.error === undefined, `learner added: ${String(added.error)}`);
  const follower = [...c.members.values()].find((m) => m !== leader)!;
  assert.deepEqual(follower.status().config.learners, [4]);
  // Restart the follower over its durable log and its (durable) state machine, which has
  // applied the change already: raft must still learn the configuration from the log.
  await new Promise<void>((r) => follower.stop(r));
  const restarted = restartMember(c, follower.id);
  assert.deepEqual(restarted.status().config.learners, [], 'before replay: the snapshot config');
  c.clock.advance(500);
  assert.deepEqual(restarted.status().config.learners, [4]);
});

test('linearizable reads on two followers at once both finish well within an election timeout', async () => {
  // Regression: each member numbered its ReadIndex contexts from 1, and the leader ignores a
  // context already pending, so the second follower's round was lost until its 1 s retry.
  const c = startCluster(3, 11);
  c.clock.advance(1000);
  const leader = leaderOf(c)!;
  const followers = [...c.members.values()].filter((m) => m !== leader);
  const reads = followers.map((f) =>
    settle(new Promise<number>((res, rej) => f.readBarrier((e, i) => (e ? rej(e) : res(i!))))),
  );
  // Well before the lost round's retry, which comes after an election timeout (100 ms here).
  c.clock.advance(50);
  await flush();
  assert.deepEqual(
    reads.map((r) => r.done && r.error === undefined),
    [true, true],
  );
});

test('a command over the size limit fails as REQUEST_TOO_LARGE, overload as TOO_MANY_REQUESTS', async () => {
  const c = startCluster(3);
  c.clock.advance(500);
  const leader = leaderOf(c)!;
  const big = new Uint8Array(COMMAND_BYTES_MAX + 1);
  const tooLarge = await new Promise<Error | null>((resolve) =>
    leader.propose(big, (error) => resolve(error)),
  );
  assert.ok(tooLarge instanceof ServerError);
  assert.equal(tooLarge.code, 'REQUEST_TOO_LARGE');
  assert.match(tooLarge.message, /request is too large/);
  // Fill the pending proposals (none can commit: the followers are cut off), then one more.
  for (const id of [...c.members.keys()]) if (id !== leader.id) c.hub.cut.add(id);
  for (let i = 0; i < PROPOSALS_PENDING_MAX; i++) leader.propose(new Uint8Array([1]), () => {});
  const overload = await new Promise<Error | null>((resolve) =>
    leader.propose(new Uint8Array([2]), (error) => resolve(error)),
  );
  assert.ok(overload instanceof ServerError);
  assert.equal(overload.code, 'TOO_MANY_REQUESTS');
  for (const m of c.members.values()) m.stop(() => {});
});

test("the state machine's deferred work runs a step per turn between applies, on every member, and waits while apply is paused", async () => {
  const c = startCluster(3);
  c.clock.advance(1000);
  const leader = leaderOf(c);
  assert.ok(leader, 'a leader');
  // One follower's apply is paused after its first step (as a defragment would pause it).
  const [pausedId, paused] = [...c.members.entries()].find(([, m]) => m !== leader)!;
  const held = c.machines.get(pausedId)!;
  const pause: { resume: Promise<() => void> | null } = { resume: null };
  held.onBackgroundStep = () => {
    pause.resume ??= paused.pauseApply();
  };
  const done = settle(proposeText(leader, 'work:5'));
  c.clock.advance(200);
  await flush();
  assert.equal(done.value, 'ok:work:5');
  for (const [id, sm] of c.machines) {
    if (id === pausedId) continue;
    assert.equal(sm.backgroundLeft, 0, `member ${id} finished the work`);
    assert.equal(sm.backgroundSteps.length, 5);
    assert.ok(
      sm.backgroundSteps.every((s) => !s.inTransaction),
      'never inside an apply transaction',
    );
  }
  assert.equal(held.backgroundSteps.length, 1, 'no step while its apply is paused');
  assert.ok(pause.resume !== null);
  (await pause.resume)();
  c.clock.advance(200);
  assert.equal(held.backgroundLeft, 0, 'resumed, it finishes the work');
  assert.equal(held.backgroundSteps.length, 5);
});
