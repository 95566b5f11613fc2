/** Quorum math against naive references (thesis §4.3 for joint quorums). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { jointCommittedIndex, jointVoteResult } from '../../src/raft/quorum/joint.js';
import {
  majorityCommittedIndex,
  majorityVoteResult,
  VoteResult,
} from '../../src/raft/quorum/majority.js';

/** Naive: the largest index i such that a strict majority acked >= i. */
function naiveCommitted(voters: number[], acked: Map<number, number>): number {
  if (voters.length === 0) return Number.POSITIVE_INFINITY;
  const candidates = [0, ...voters.map((v) => acked.get(v) ?? 0)];
  let best = 0;
  for (const i of candidates) {
    const count = voters.filter((v) => (acked.get(v) ?? 0) >= i).length;
    if (count * 2 > voters.length && i > best) best = i;
  }
  return best;
}

/** Naive: enumerate every completion of the missing votes. */
function naiveVote(voters: number[], votes: Map<number, boolean>): VoteResult {
  if (voters.length === 0) return VoteResult.Won;
  const missing = voters.filter((v) => !votes.has(v));
  const outcomes = new Set<boolean>();
  for (let mask = 0; mask < 1 << missing.length; mask++) {
    const yes =
      voters.filter((v) => votes.get(v) === true).length +
      missing.filter((_, i) => (mask >> i) & 1).length;
    outcomes.add(yes * 2 > voters.length);
  }
  if (outcomes.size === 2) return VoteResult.Pending;
  return outcomes.has(true) ? VoteResult.Won : VoteResult.Lost;
}

const voterSet = fc.uniqueArray(fc.integer({ min: 1, max: 12 }), { maxLength: 7 });
const ackMap = fc
  .array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 20 })))
  .map((pairs) => new Map(pairs));
const voteMap = fc
  .array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.boolean()))
  .map((pairs) => new Map(pairs));

test('majority committed index equals the naive reference', () => {
  fc.assert(
    fc.property(voterSet, ackMap, (voters, acked) => {
      const got = majorityCommittedIndex(voters, (id) => acked.get(id));
      assert.equal(got, naiveCommitted(voters, acked));
    }),
    { numRuns: 2000 },
  );
});

test('joint committed index is the min of both majorities', () => {
  fc.assert(
    fc.property(voterSet, voterSet, ackMap, (incoming, outgoing, acked) => {
      const got = jointCommittedIndex(incoming, outgoing, (id) => acked.get(id));
      const want = Math.min(naiveCommitted(incoming, acked), naiveCommitted(outgoing, acked));
      assert.equal(got, want);
    }),
    { numRuns: 2000 },
  );
});

test('majority vote result equals exhaustive completion', () => {
  fc.assert(
    fc.property(voterSet, voteMap, (voters, votes) => {
      assert.equal(majorityVoteResult(voters, votes), naiveVote(voters, votes));
    }),
    { numRuns: 2000 },
  );
});

test('joint vote needs both halves', () => {
  fc.assert(
    fc.property(voterSet, voterSet, voteMap, (incoming, outgoing, votes) => {
      const a = naiveVote(incoming, votes);
      const b = naiveVote(outgoing, votes);
      const want =
        a === VoteResult.Lost || b === VoteResult.Lost
          ? VoteResult.Lost
          : a === VoteResult.Won && b === VoteResult.Won
            ? VoteResult.Won
            : VoteResult.Pending;
      assert.equal(jointVoteResult(incoming, outgoing, votes), want);
    }),
    { numRuns: 2000 },
  );
});

test('table: majority committed index', () => {
  const cases: [number[], Record<number, number>, number][] = [
    [[1], { 1: 5 }, 5],
    [[1, 2, 3], { 1: 5, 2: 3 }, 3],
    [[1, 2, 3], { 1: 5 }, 0],
    [[1, 2, 3, 4], { 1: 5, 2: 4, 3: 3, 4: 2 }, 3],
    [[1, 2, 3, 4, 5], { 1: 9, 2: 8, 3: 1, 4: 1 }, 1],
  ];
  for (const [voters, acks, want] of cases) {
    const acked = new Map(Object.entries(acks).map(([k, v]) => [Number(k), v]));
    assert.equal(
      majorityCommittedIndex(voters, (id) => acked.get(id)),
      want,
    );
  }
});
