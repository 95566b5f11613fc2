/**
 * Joint quorums (etcd-io/raft quorum/joint.go): during a membership change, decisions need a
 * majority of the incoming AND of the outgoing configuration (Raft thesis §4.3).
 */
import type { NodeId } from '../types.js';
import {
  type AckedIndexer,
  majorityCommittedIndex,
  majorityVoteResult,
  VoteResult,
} from './majority.js';

export function jointCommittedIndex(
  incoming: readonly NodeId[],
  outgoing: readonly NodeId[],
  acked: AckedIndexer,
  scratch?: number[],
): number {
  const a = majorityCommittedIndex(incoming, acked, scratch);
  const b = majorityCommittedIndex(outgoing, acked, scratch);
  return Math.min(a, b);
}

export function jointVoteResult(
  incoming: readonly NodeId[],
  outgoing: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const a = majorityVoteResult(incoming, votes);
  const b = majorityVoteResult(outgoing, votes);
  if (a === b) return a;
  if (a === VoteResult.Lost || b === VoteResult.Lost) return VoteResult.Lost;
  // One side won and the other is pending.
  return VoteResult.Pending;
}
