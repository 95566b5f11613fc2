import { TandemError } from '../util/errors.js';
import { NONE, type NodeId } from './types.js';

export type RaftErrorCode =
  /** A proposal could not be accepted (no leader, transfer in progress, limits); retry later. */
  | 'PROPOSAL_DROPPED'
  /** A local-only message type was passed to `RawNode.step`. */
  | 'STEP_LOCAL_MSG'
  /** A ReadIndex request could not be accepted (no leader, too many pending reads). */
  | 'READ_INDEX_DROPPED'
  /** Storage: the requested index was compacted away. */
  | 'COMPACTED'
  /** Storage: the requested index is beyond the last index. */
  | 'UNAVAILABLE'
  /** Storage: the snapshot is older than the one already held. */
  | 'SNAP_OUT_OF_DATE'
  /** A membership change that cannot be applied to the current configuration. */
  | 'INVALID_CONF_CHANGE'
  /** A ConfChange that does not decode. */
  | 'CORRUPT_CONF_CHANGE'
  /** A RaftConfig whose values break a stated relation. */
  | 'INVALID_CONFIG';

export class RaftError extends TandemError<RaftErrorCode> {
  /** The leader this node knows of when the error was raised (NONE if unknown): a redirect hint. */
  readonly leader: NodeId;
  constructor(code: RaftErrorCode, message: string, leader: NodeId = NONE) {
    super(code, message);
    this.leader = leader;
  }
}

/**
 * The leader told this node that an index beyond its last entry is committed: entries this node
 * acknowledged are gone from its log (a write reported durable that was not, or a damaged disk).
 * Like etcd's panic of the same name it stops the node; it is no RaftError, so nothing that
 * retries a refused proposal or read can swallow it, and the simulator names it an invariant.
 */
export class LogLostError extends Error {
  override readonly name = 'LogLostError';
  constructor(
    readonly toCommit: number,
    readonly lastIndex: number,
  ) {
    super(
      `commit ${toCommit} beyond last index ${lastIndex}: entries this node acknowledged are gone ` +
        '(an unsynced write reported durable, or a truncated or lost log)',
    );
  }
}
