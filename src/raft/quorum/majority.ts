/**
 * Majority quorums (etcd-io/raft quorum/majority.go): the committed index of a set of voters and
 * the result of a vote. Pure functions over sorted id arrays; configurations are tiny (<= 9).
 */
import type { NodeId } from '../types.js';

export const VoteResult = {
  /** Neither won nor lost yet: missing votes could still decide either way. */
  Pending: 0,
  Lost: 1,
  Won: 2,
} as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

/** Returns the index acknowledged by `id`, or undefined when `id` has not acknowledged anything. */
export type AckedIndexer = (id: NodeId) => number | undefined;

/**
 * The largest index acknowledged by a majority of `voters` (missing acks count as 0).
 * An empty configuration returns +Infinity so that joint quorums take the other half's value.
 * `scratch` is an optional reusable buffer to avoid an allocation per call.
 */
export function majorityCommittedIndex(
  voters: readonly NodeId[],
  acked: AckedIndexer,
  scratch: number[] = [],
): number {
  const n = voters.length;
  if (n === 0) return Number.POSITIVE_INFINITY;
  scratch.length = n;
  // Insertion sort, descending: n is tiny and this avoids a comparator closure.
  for (let i = 0; i < n; i++) {
    const value = acked(voters[i]!) ?? 0;
    let j = i;
    while (j > 0 && scratch[j - 1]! < value) {
      scratch[j] = scratch[j - 1]!;
      j--;
    }
    scratch[j] = value;
  }
  // The q-th largest value (q = n/2 + 1) is acknowledged by at least q voters.
  return scratch[n >> 1]!;
}

/** The outcome of a vote among `voters`; `votes` maps a voter to its answer if it answered. */
export function majorityVoteResult(
  voters: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const n = voters.length;
  // An empty configuration wins every vote, so that joint quorums defer to the other half.
  if (n === 0) return VoteResult.Won;
  let granted = 0;
  let missing = 0;
  for (let i = 0; i < n; i++) {
    const vote = votes.get(voters[i]!);
    if (vote === undefined) missing++;
    else if (vote) granted++;
  }
  const quorum = (n >> 1) + 1;
  if (granted >= quorum) return VoteResult.Won;
  if (granted + missing >= quorum) return VoteResult.Pending;
  return VoteResult.Lost;
}
