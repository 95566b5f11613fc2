/**
 * The node host keeps the Ready contract: what a message claims is durable before it leaves (a
 * granted vote, an acknowledged append), a crash loses the Ready in flight, and a restart resumes
 * from durable state only.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Message, MessageType } from '../../src/raft/types.js';
import type { NodeHost } from '../../src/sim/node.js';
import { Simulation } from '../../src/sim/simulator.js';

test('votes and append acknowledgements leave only once durable', () => {
  let votes = 0;
  let acks = 0;
  for (let seed = 0; seed < 40; seed++) {
    const sim = new Simulation({ seed });
    const send = sim.network.send.bind(sim.network);
    sim.network.send = (from: number, to: number, msg: Message) => {
      const st = sim.hosts.get(from)!.storage;
      const hs = st.initialState().hardState;
      if (msg.type === MessageType.VoteResp && !msg.reject) {
        votes++;
        assert.equal(
          hs.term,
          msg.term,
          `seed ${seed}: n${from} votes in term ${msg.term} on disk ${hs.term}`,
        );
        assert.equal(hs.vote, to, `seed ${seed}: n${from}'s vote for n${to} is not on disk`);
      }
      if (msg.type === MessageType.AppResp && !msg.reject) {
        acks++;
        assert.ok(
          st.lastIndex() >= msg.index,
          `seed ${seed}: n${from} acks ${msg.index} with ${st.lastIndex()} on disk`,
        );
        assert.ok(
          hs.term >= msg.term,
          `seed ${seed}: n${from} answers in term ${msg.term} with ${hs.term} on disk`,
        );
      }
      send(from, to, msg);
    };
    sim.run(200_000);
  }
  assert.ok(votes > 100 && acks > 1000, `too few checked: ${votes} votes, ${acks} acks`);
});

test('a crash loses the write in flight and a restart resumes from disk', () => {
  const sim = new Simulation({ seed: 11, voters: 3 });
  for (const host of sim.hosts.values()) host.start();
  // Run, proposing on the leader, until entries are committed and some node has a write in flight.
  const findVictim = (): NodeHost => {
    for (let i = 0; i < 200_000; i++) {
      sim.queue.runNext();
      if (i % 50 === 0) sim.leader()?.propose(new Uint8Array([9, 9, 9, 9, 9]));
      if (sim.checker.committedMax < 5) continue;
      for (const host of sim.hosts.values())
        if (host.up && host.disk.writesPending > 0) return host;
    }
    throw new Error('no write was ever in flight');
  };
  const victim = findVictim();
  const durable = { ...victim.storage.initialState().hardState, last: victim.storage.lastIndex() };
  victim.crash();
  assert.equal(victim.up, false);
  assert.equal(victim.disk.writesPending, 0);
  assert.equal(victim.role(), null);
  assert.equal(victim.propose(new Uint8Array([1])), false, 'a down node takes no proposal');
  for (let i = 0; i < 5000; i++) sim.queue.runNext();
  const still = victim.storage.initialState().hardState;
  assert.equal(victim.storage.lastIndex(), durable.last, 'a write landed after the crash');
  assert.deepEqual(
    [still.term, still.vote, still.commit],
    [durable.term, durable.vote, durable.commit],
  );
  victim.start();
  const view = victim.raftView()!;
  assert.equal(view.lastIndex, durable.last, 'the restarted raft log is the durable one');
  assert.equal(victim.role()!.term, durable.term);
});
