/**
 * The real `RaftPersistence` (the contract in src/io/persistence.ts): the segmented WAL (group
 * commit, one fdatasync per Ready) and the snapshot store, plus recovery of a member's durable
 * Raft state at start-up. The member is written against the interface; only src/cli builds this.
 *
 * A record damaged in every WAL copy is recovered through `repair` when the WAL proves it safe
 * (storage/wal/wal.ts "open"): the member then starts only once its log is whole again.
 *
 * Order that keeps a crash at any point recoverable:
 *   - a snapshot's data file is durable before the WAL records its marker, so a marker always
 *     names a snapshot that exists;
 *   - WAL segments are released only up to a durable snapshot's index.
 */
import { join } from 'node:path';
import type { PersistRequest, RaftPersistence } from '../io/persistence.js';
import { MemoryStorage } from '../raft/storage.js';
import type { Snapshot } from '../raft/types.js';
import { StorageError } from './errors.js';
import { type FileSystem, NodeFileSystem } from './fs.js';
import { SnapshotStore } from './snapshot/store.js';
import { Wal, type WalRepairHook, type WalStats } from './wal/wal.js';

export interface DurableStateOptions {
  readonly dataDir: string;
  readonly mirrorDir?: string | null;
  readonly clusterId: number;
  readonly memberId: number;
  readonly segmentBytes?: number;
  readonly fs?: FileSystem;
  readonly logger?: { warn(message: string): void };
  /**
   * Protocol-aware recovery: how to get committed entries the WAL lost in every copy (a member
   * fetches them from its peers, src/transport/fetch.ts). Without it such damage is refused.
   */
  readonly repair?: WalRepairHook;
}

export interface RecoveredState {
  readonly persistence: WalPersistence;
  /** The log as recovered: snapshot, entries after it, hard state. */
  readonly storage: MemoryStorage;
  /** The snapshot the log starts from (null on a brand-new data directory). */
  readonly snapshot: Snapshot | null;
  /** True when the data directory held no Raft state (a new member). */
  readonly fresh: boolean;
  readonly walStats: WalStats;
}

export class WalPersistence implements RaftPersistence {
  private releasing = false;

  constructor(
    readonly wal: Wal,
    readonly snapshots: SnapshotStore,
    private readonly logger?: { warn(message: string): void },
  ) {}

  /** Opens (or creates) the WAL and snapshot store under `dataDir` and rebuilds the log. */
  static async recover(options: DurableStateOptions): Promise<RecoveredState> {
    const fs = options.fs ?? new NodeFileSystem();
    const snapshots = new SnapshotStore({ fs, dir: join(options.dataDir, 'snap') });
    await snapshots.init();
    const opened = await Wal.open({
      fs,
      dir: join(options.dataDir, 'wal'),
      mirrorDir: options.mirrorDir ?? null,
      clusterId: options.clusterId,
      memberId: options.memberId,
      ...(options.segmentBytes === undefined ? {} : { segmentBytes: options.segmentBytes }),
      ...(options.repair === undefined ? {} : { repair: options.repair }),
    });
    const { damaged, fetched } = opened.stats;
    if (damaged.length > 0) {
      options.logger?.warn(
        `WAL recovered past ${damaged.length} span(s) damaged in every copy ` +
          `(${damaged.map((d) => `${d.file}:${d.offset} (${d.bytes} bytes)`).join(', ')}); ` +
          (fetched.length === 0
            ? 'nothing lost (harmless); '
            : `committed entries ${fetched.map((f) => `${f.firstIndex}..${f.lastIndex}`).join(', ')} fetched from peers; `) +
          'the log was rewritten into a fresh segment',
      );
    }
    const storage = new MemoryStorage();
    let snapshot: Snapshot | null = null;
    const marker = opened.snapshot;
    if (marker.index > 0) {
      const load = await snapshots.load((m) => m.index === marker.index && m.term === marker.term);
      if (load.snapshot === null) {
        await opened.wal.close();
        throw new StorageError(
          'SNAPSHOT_MISSING',
          `the WAL starts from snapshot ${marker.index}/${marker.term}, which is missing or damaged in ${join(options.dataDir, 'snap')}`,
        );
      }
      snapshot = load.snapshot;
      storage.applySnapshot(snapshot);
    }
    if (opened.entries.length > 0) storage.append(opened.entries);
    const hs = opened.hardState;
    const fresh = marker.index === 0 && opened.entries.length === 0 && hs.term === 0;
    if (!fresh) storage.setHardState(hs);
    return {
      persistence: new WalPersistence(opened.wal, snapshots, options.logger),
      storage,
      snapshot,
      fresh,
      walStats: opened.stats,
    };
  }

  save(request: PersistRequest, done: (error: Error | null) => void): void {
    const { hardState, entries, snapshot } = request;
    // Only a hard state whose term and vote did not move may wait for the next synced save.
    const sync = request.mustSync || entries.length > 0 || snapshot !== null;
    const write = async (): Promise<void> => {
      if (snapshot !== null) await this.snapshots.save(snapshot);
      const marker =
        snapshot === null ? null : { index: snapshot.metadata.index, term: snapshot.metadata.term };
      await this.wal.save(hardState, entries, marker, sync);
    };
    write().then(
      () => done(null),
      (error: unknown) => done(asError(error)),
    );
  }

  saveSnapshot(snapshot: Snapshot, done: (error: Error | null) => void): void {
    const marker = { index: snapshot.metadata.index, term: snapshot.metadata.term };
    this.snapshots
      .save(snapshot)
      .then(() => this.wal.save(null, [], marker))
      .then(
        () => done(null),
        (error: unknown) => done(asError(error)),
      );
  }

  release(index: number): void {
    if (this.releasing) return; // the next snapshot releases further
    this.releasing = true;
    this.wal.releaseTo(index).then(
      () => {
        this.releasing = false;
      },
      (error: unknown) => {
        this.releasing = false;
        this.logger?.warn(`WAL release to ${index} failed: ${asError(error).message}`);
      },
    );
  }

  close(): Promise<void> {
    return this.wal.close();
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
