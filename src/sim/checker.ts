/**
 * The invariants, checked as the run goes (after every event that could break them). Each check
 * has a name; a violation throws `InvariantViolation`, which ends the run with the seed.
 *
 * - election-safety: at most one leader per term (Raft §5.2), observed on volatile state.
 * - log-matching: two durable entries with the same index and term are the same entry and have
 *   the same predecessor term, so by induction the same prefix (§5.3).
 * - leader-completeness: a new leader's log holds every entry committed in an earlier term (§5.4);
 *   and no node lacking the latest committed entry could win an election (checkElectable).
 * - committed-stable: no member loses or replaces an entry at or below its own commit index, or
 *   installs a snapshot behind it, across crashes; its synced commit index never goes back.
 * - state-machine-safety: every member applies the same sequence (a chained hash per index), only
 *   committed entries, and gets the same configuration from each conf change entry.
 * - linearizable-read: a ReadIndex read served at index r has r >= the highest index of a write
 *   acknowledged before the read began.
 * - liveness: checked by the simulator's liveness phase.
 */
import { LogLostError } from '../raft/errors.js';
import type { Entry, Snapshot } from '../raft/types.js';
import { entryHash } from './statemachine.js';

export const INVARIANTS = [
  'election-safety',
  'log-matching',
  'leader-completeness',
  'committed-stable',
  'state-machine-safety',
  'linearizable-read',
  'liveness',
  // Raft's own check (LogLostError): a node was told an index it acknowledged is committed, and
  // its log no longer holds it.
  'acked-entries-kept',
  // Member mode (kv-checker.ts): client-visible results of the production member loop.
  'kv-state-hash',
  'acked-write-lost',
  // Member mode (member-checker.ts): the parts around the loop, met through the etcd façade.
  'served-from-the-past',
  'standby-served',
  'ack-all-durable',
  'lease-expired-early',
  'published',
  // Redundancy mode (redundancy.ts): what the production redundancy policy does.
  'quorum-at-change',
  'promote-caught-up',
  'flapping-churn',
  'one-change-at-a-time',
  'factor-restored',
  // A trim demotes only a surplus voter the policy promoted, never below the policy's voters.
  'trim-surplus',
] as const;
export type InvariantName = (typeof INVARIANTS)[number];

export class InvariantViolation extends Error {
  override readonly name = 'InvariantViolation';
  constructor(
    readonly invariant: InvariantName,
    message: string,
  ) {
    super(`${invariant}: ${message}`);
  }
}

export type FailureKind = 'safety' | 'liveness' | 'crash';

export interface RunFailure {
  readonly kind: FailureKind;
  /** The invariant violated (undefined for a crash of the simulator itself). */
  readonly invariant?: InvariantName;
  readonly message: string;
  readonly atMs: number;
  readonly stack?: string;
}

/** What a run that threw failed of: an invariant (safety or liveness), or a simulator crash. */
export function failureOf(error: unknown, atMs: number): RunFailure {
  if (error instanceof InvariantViolation) {
    const kind: FailureKind =
      error.invariant === 'liveness' ||
      error.invariant === 'factor-restored' ||
      error.invariant === 'published'
        ? 'liveness'
        : 'safety';
    return { kind, invariant: error.invariant, message: error.message, atMs };
  }
  if (error instanceof LogLostError) {
    return { kind: 'safety', invariant: 'acked-entries-kept', message: error.message, atMs };
  }
  const e = error instanceof Error ? error : new Error(String(error));
  return {
    kind: 'crash',
    message: `${e.name}: ${e.message}`,
    atMs,
    ...(e.stack ? { stack: e.stack } : {}),
  };
}

/** What the checker reads of a member's durable log. */
export interface DurableLog {
  firstIndex(): number;
  lastIndex(): number;
  term(i: number): number;
  entries(lo: number, hi: number, maxBytes: number): readonly Entry[];
  snapshot(): Snapshot;
}

interface EntryRecord {
  readonly hash: number;
  readonly prevTerm: number;
}

/** Terms fit in 20 bits in the (index, term) key; a run that exceeds that is a runaway. */
const TERM_KEY_LIMIT = 1 << 20;

export class Checker {
  private readonly leaderByTerm = new Map<number, number>();
  /** (index, term) → the entry's hash and its predecessor's term, across all durable logs. */
  private readonly entriesSeen = new Map<number, EntryRecord>();
  /** Committed entries by index: term, hash, and the term of the member that recorded it. */
  private readonly committedTerm: number[] = [0];
  private readonly committedHash: number[] = [0];
  private readonly committedRecordTerm: number[] = [0];
  /** Chained state machine hash after applying each index, as first seen by any member. */
  private readonly appliedChain = new Map<number, number>();
  /** The configuration each conf change entry produced, as first seen. */
  private readonly confByIndex = new Map<number, string>();
  /** Per member: the commit index last written to its disk (possibly not yet synced). */
  private readonly durableCommit = new Map<number, number>();
  /** Per member: the commit index last synced (fdatasync'ed): it never goes back. */
  private readonly syncedCommit = new Map<number, number>();
  /** Highest index of an acknowledged write. */
  maxAckedIndex = 0;
  checksCount = 0;

  /** Records what a bootstrap wrote directly to every founding member's storage. */
  seedCommitted(index: number, term: number): void {
    if (index !== this.committedMax + 1)
      throw new Error(`seedCommitted(${index}) after ${this.committedMax}`);
    this.committedTerm.push(term);
    this.committedHash.push(0);
    this.committedRecordTerm.push(term);
  }

  get leaderTermsCount(): number {
    return this.leaderByTerm.size;
  }

  get committedMax(): number {
    return this.committedTerm.length - 1;
  }

  committedTermAt(index: number): number | undefined {
    return this.committedTerm[index];
  }

  // -------------------------------------------------------------------------------------------
  // election-safety

  observeLeader(node: number, term: number): void {
    this.checksCount++;
    const other = this.leaderByTerm.get(term);
    if (other === undefined) {
      this.leaderByTerm.set(term, node);
    } else if (other !== node) {
      throw new InvariantViolation(
        'election-safety',
        `nodes ${other} and ${node} are both leader in term ${term}`,
      );
    }
  }

  /**
   * `node` crashed with durable term `durableTerm`: a leadership of a later term never reached
   * its disk, so it did nothing anyone saw (its messages, applies and reads all wait for the
   * Ready that carries the new term) and the crash undoes it, self-vote included. Only a sole
   * voter is elected before that Ready is durable: its own vote is a quorum.
   */
  forgetUndurableLeadership(node: number, durableTerm: number): void {
    for (const [term, leader] of this.leaderByTerm) {
      if (leader === node && term > durableTerm) this.leaderByTerm.delete(term);
    }
  }

  // -------------------------------------------------------------------------------------------
  // leader-completeness

  /**
   * Checks a leader's whole log (its durable log plus `unstable`, the entries not yet durable,
   * which may replace a suffix) against every entry committed in a term before `term`.
   */
  checkLeaderLog(node: number, term: number, log: DurableLog, unstable: readonly Entry[]): void {
    this.checksCount++;
    // The highest committed index recorded in an earlier term: a lower bound of what §5.4
    // promises, so no false alarm (an entry committed in term >= `term` is not required).
    let k = this.committedMax;
    while (k > 0 && this.committedRecordTerm[k]! >= term) k--;
    if (k === 0) return;
    const want = this.committedTerm[k]!;
    const unstableFirst = unstable.length > 0 ? unstable[0]!.index : Number.POSITIVE_INFINITY;
    let have: number | undefined;
    if (k >= unstableFirst) {
      have = unstable[k - unstableFirst]?.term;
    } else if (k <= log.lastIndex()) {
      if (k < log.firstIndex() - 1) return; // compacted into the snapshot, checked when persisted
      have = log.term(k);
    }
    if (have !== want) {
      throw new InvariantViolation(
        'leader-completeness',
        `node ${node} became leader of term ${term} without committed entry ${k} (term ${want}); ` +
          `its log has ${have === undefined ? 'nothing' : `term ${have}`} there`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // log-matching, committed-stable

  /** Called after a member made a Ready durable: its snapshot, entries and hard state. */
  onPersist(
    node: number,
    log: DurableLog,
    snapshot: Snapshot | null,
    entries: readonly Entry[],
    commit: number | null,
    term: number,
    synced = true,
  ): void {
    this.checksCount++;
    if (snapshot !== null) this.checkSnapshot(node, snapshot);
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const prevTerm =
        i > 0 ? entries[i - 1]!.term : entry.index === 1 ? 0 : log.term(entry.index - 1);
      this.checkEntry(node, entry, prevTerm);
    }
    if (commit !== null) this.onDurableCommit(node, log, commit, term);
    if (synced) this.syncedCommit.set(node, this.durableCommit.get(node) ?? 0);
  }

  /** A member's write made its commit index up to `commit` durable (member mode's model). */
  onSynced(node: number, commit: number): void {
    this.syncedCommit.set(node, Math.max(commit, this.syncedCommit.get(node) ?? 0));
  }

  /**
   * A crash lost the member's unsynced writes: its commit index on disk is back to `commit`,
   * which may not be below what was synced.
   */
  onCrashRevert(node: number, commit: number): void {
    const synced = this.syncedCommit.get(node) ?? 0;
    if (commit < synced) {
      throw new InvariantViolation(
        'committed-stable',
        `node ${node}'s synced commit index went back from ${synced} to ${commit} in a crash`,
      );
    }
    this.durableCommit.set(node, commit);
  }

  /**
   * Called before a member's durable log loses its entries from `from` on (an append that
   * truncates a conflicting suffix, or a snapshot that replaces the log). None of them may be a
   * committed entry the member knows is committed (at or below its commit index). A copy beyond
   * its commit index may go: a stale leader of an older term than the one that committed it can
   * still truncate it on a member that never heard of the newer term (seed 10573 before this
   * rule: a learner lost 57@31, committed in term 35, to a deposed leader of term 34). The
   * entry is not lost: the committing majority holds it and rejects that stale leader.
   */
  beforeDiscard(node: number, log: DurableLog, from: number, why: string): void {
    const known = this.durableCommit.get(node) ?? 0;
    const last = Math.min(log.lastIndex(), this.committedMax, known);
    for (let i = Math.max(from, log.firstIndex()); i <= last; i++) {
      if (log.term(i) === this.committedTerm[i]) {
        throw new InvariantViolation(
          'committed-stable',
          `node ${node} discarded its committed entry ${i} (term ${log.term(i)}) by ${why}`,
        );
      }
    }
  }

  /** Calls `beforeDiscard` for the suffix that appending `entries` would truncate, if any. */
  beforeAppend(node: number, log: DurableLog, entries: readonly Entry[]): void {
    const last = log.lastIndex();
    for (const entry of entries) {
      if (entry.index > last) return;
      if (entry.index < log.firstIndex()) continue;
      if (log.term(entry.index) !== entry.term) {
        this.beforeDiscard(node, log, entry.index, `an append of term ${entry.term}`);
        return;
      }
    }
  }

  private checkSnapshot(node: number, snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    if (index === 0) return;
    const commit = this.durableCommit.get(node) ?? 0;
    if (index < commit) {
      throw new InvariantViolation(
        'committed-stable',
        `node ${node} installed a snapshot at ${index}, behind its durable commit index ${commit}`,
      );
    }
    const want = this.committedTerm[index];
    // A bootstrap snapshot may precede any recorded commit; a later one must be committed.
    if (want !== undefined && want !== term) {
      throw new InvariantViolation(
        'committed-stable',
        `node ${node} installed a snapshot at ${index} of term ${term}, but committed entry ` +
          `${index} has term ${want}`,
      );
    }
  }

  private checkEntry(node: number, entry: Entry, prevTerm: number): void {
    if (entry.term >= TERM_KEY_LIMIT) throw new Error(`term ${entry.term} out of range`);
    const hash = entryHash(entry);
    const key = entry.index * TERM_KEY_LIMIT + entry.term;
    const seen = this.entriesSeen.get(key);
    if (seen === undefined) {
      this.entriesSeen.set(key, { hash, prevTerm });
    } else if (seen.hash !== hash || seen.prevTerm !== prevTerm) {
      const what =
        seen.hash !== hash
          ? 'different contents than on another node'
          : `a predecessor of term ${prevTerm}, but of term ${seen.prevTerm} on another node`;
      throw new InvariantViolation(
        'log-matching',
        `entry ${entry.index} of term ${entry.term} on node ${node} has ${what}`,
      );
    }
    // A member may write a stale entry where it has not yet learned the committed one, but not
    // at or below its own commit index.
    if (entry.index <= (this.durableCommit.get(node) ?? 0)) {
      const want = this.committedTerm[entry.index]!;
      if (want !== entry.term || this.committedHash[entry.index] !== hash) {
        throw new InvariantViolation(
          'committed-stable',
          `node ${node} wrote entry ${entry.index} of term ${entry.term} over committed entry ` +
            `${entry.index} of term ${want}`,
        );
      }
    }
  }

  private onDurableCommit(node: number, log: DurableLog, commit: number, term: number): void {
    const before = this.durableCommit.get(node) ?? 0;
    if (commit < before) {
      throw new InvariantViolation(
        'committed-stable',
        `node ${node}'s commit index on disk went back from ${before} to ${commit}`,
      );
    }
    this.durableCommit.set(node, commit);
    if (commit > log.lastIndex()) {
      throw new InvariantViolation(
        'committed-stable',
        `node ${node} has commit index ${commit} beyond its last entry ${log.lastIndex()}`,
      );
    }
    // The member's entry at its commit index must be the committed one (log matching then
    // covers the prefix); entries beyond what is known committed get recorded.
    const max = this.committedMax;
    if (commit <= max) {
      if (commit >= log.firstIndex() && log.term(commit) !== this.committedTerm[commit]) {
        throw new InvariantViolation(
          'committed-stable',
          `node ${node} has entry ${commit} of term ${log.term(commit)} at its commit index, ` +
            `but committed entry ${commit} has term ${this.committedTerm[commit]}`,
        );
      }
      return;
    }
    if (max + 1 < log.firstIndex()) {
      // The entries were compacted here; another member recorded them when it committed them.
      throw new Error(`node ${node} commits ${commit} but entries from ${max + 1} are compacted`);
    }
    const fresh = log.entries(max + 1, commit + 1, Number.POSITIVE_INFINITY);
    for (const entry of fresh) {
      this.committedTerm.push(entry.term);
      this.committedHash.push(entryHash(entry));
      this.committedRecordTerm.push(term);
    }
    if (this.committedMax !== commit)
      throw new Error(`storage returned too few entries to ${commit}`);
    this.onCommitAdvanced?.(commit);
  }

  /** Called after the known committed prefix grew (the simulator checks electability). */
  onCommitAdvanced: ((committedMax: number) => void) | null = null;

  /**
   * leader-completeness, in its predictive form: a node whose log lacks the latest committed
   * entry must not be able to win an election, i.e. its log must not be at least as up to date
   * as the logs of a majority of the voters it would ask (both majorities when joint). Raft
   * guarantees it: the entry that committed K (of the committing leader's term T, at an index
   * >= K) is durable on a majority, and a log lacking K is less up to date than each of those.
   * `voterLog` gives each voter's least up-to-date log (durable or in memory), or null.
   */
  checkElectable(
    node: number,
    last: { index: number; term: number },
    hasCommitted: boolean,
    voters: readonly number[],
    votersOutgoing: readonly number[],
    voterLog: (id: number) => { index: number; term: number } | null,
  ): void {
    this.checksCount++;
    if (hasCommitted) return;
    const wins = (set: readonly number[]): boolean => {
      if (set.length === 0) return true;
      let votes = 0;
      for (const id of set) {
        const log = voterLog(id);
        if (
          log !== null &&
          (last.term > log.term || (last.term === log.term && last.index >= log.index))
        )
          votes++;
      }
      return votes > set.length / 2;
    };
    if (voters.length > 0 && wins(voters) && wins(votersOutgoing)) {
      const k = this.committedMax;
      throw new InvariantViolation(
        'leader-completeness',
        `node ${node} lacks committed entry ${k} (term ${this.committedTerm[k]}) yet its log ` +
          `(last ${last.index}@${last.term}) is at least as up to date as a majority of voters ` +
          `${voters.join(',')}${votersOutgoing.length > 0 ? ` / ${votersOutgoing.join(',')}` : ''}: it could be elected`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // state-machine-safety

  onApply(node: number, entry: Entry, chainAfter: number): void {
    this.checksCount++;
    const i = entry.index;
    if (
      i > this.committedMax ||
      this.committedTerm[i] !== entry.term ||
      this.committedHash[i] !== entryHash(entry)
    ) {
      throw new InvariantViolation(
        'state-machine-safety',
        `node ${node} applied entry ${i} of term ${entry.term}, which is not the committed entry ` +
          `${i} (${i > this.committedMax ? 'none known' : `term ${this.committedTerm[i]}`})`,
      );
    }
    this.checkChain(node, i, chainAfter, 'applying');
  }

  /**
   * The configuration a conf change entry produces (or its rejection, `null`) is part of the
   * state machine: the same on every member.
   */
  onConfApplied(node: number, index: number, conf: string | null): void {
    this.checksCount++;
    const result = conf ?? 'rejected';
    const seen = this.confByIndex.get(index);
    if (seen === undefined) {
      this.confByIndex.set(index, result);
    } else if (seen !== result) {
      throw new InvariantViolation(
        'state-machine-safety',
        `node ${node} applied conf change ${index} to get ${result}, another member got ${seen}`,
      );
    }
  }

  onRestore(node: number, index: number, chain: number): void {
    this.checksCount++;
    this.checkChain(node, index, chain, 'restoring a snapshot at');
  }

  private checkChain(node: number, index: number, chain: number, what: string): void {
    const seen = this.appliedChain.get(index);
    if (seen === undefined) {
      this.appliedChain.set(index, chain);
    } else if (seen !== chain) {
      throw new InvariantViolation(
        'state-machine-safety',
        `node ${node}'s state machine after ${what} ${index} differs from another member's`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // linearizable-read

  onAck(index: number): void {
    if (index > this.maxAckedIndex) this.maxAckedIndex = index;
  }

  onReadServed(node: number, readId: number, index: number, ackedAtStart: number): void {
    this.checksCount++;
    if (index < ackedAtStart) {
      throw new InvariantViolation(
        'linearizable-read',
        `read ${readId} on node ${node} was served at index ${index}, but a write at index ` +
          `${ackedAtStart} was acknowledged before the read began`,
      );
    }
  }
}
