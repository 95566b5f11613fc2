/**
 * Durable Raft state as a member sees it: where each Ready's hard state, entries and snapshot go
 * before any of its messages may leave (the persistence contract of src/raft/types.ts Ready).
 *
 * Callback style on purpose: the member loop is a plain state machine that the simulator drives
 * event by event; a callback fires from the real event loop (WAL) or from the simulator's event
 * queue (virtual disk), never re-entrantly from inside the call that started the work.
 *
 * Two implementations: `WalPersistence` (src/storage/raft-persistence.ts: the segmented WAL plus
 * the snapshot store, real fdatasync) and the simulator's virtual disk.
 */
import type { Entry, HardState, Snapshot } from '../raft/types.js';

export type Done = (error: Error | null) => void;

/** What one Ready asks to persist (a Ready is one). */
export interface PersistRequest {
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
  /**
   * False when only the commit index moved (no entries, term or vote): the hard state may be
   * written later, with the next synced save, since a commit index lost in a crash is learned
   * again from the leader (etcd's MustSync).
   */
  readonly mustSync: boolean;
}

export interface RaftPersistence {
  /**
   * Makes one Ready durable: `snapshot` (data file, then its marker), `entries`, `hardState`,
   * in one group commit. When `mustSync`, `done(null)` once all of it would survive a machine
   * crash; otherwise (a commit index alone) `done(null)` may come before it is written, and a
   * crash before the next synced save may lose it. `done(error)` means the member must stop (a
   * failed fdatasync cannot be retried safely).
   */
  save(request: PersistRequest, done: Done): void;
  /** Stores a snapshot the member took of its own applied state (for log compaction). */
  saveSnapshot(snapshot: Snapshot, done: Done): void;
  /** Entries up to `index` are covered by a durable snapshot; their space may be reclaimed. */
  release(index: number): void;
}
