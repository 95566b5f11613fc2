/**
 * `tandem restore --from FILE`: a member's data directory for a new cluster, from a snapshot
 * file of either system (etcd's `snapshot restore` for tandem). The file is a tandem backup,
 * `etcdctl snapshot save` output from tandem or from etcd, or (with --skip-hash-check) an
 * etcd `member/snap/db` copied from a data directory. Every founding member is restored from
 * the same file, then started with `cluster.state: new`: the founders bootstrap the new cluster
 * with the restored keys, revisions and leases (the first raft snapshot carries them).
 *
 * Refuses a data directory that already holds a WAL or a KV store: a restore never overwrites.
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import cliProgress from 'cli-progress';
import { LmdbBackend } from '../kv/backend/lmdb.js';
import { type EtcdRestoreResult, restoreEtcdSnapshot } from '../server/etcd-snapshot.js';
import { kvDir, type TandemConfig } from './config.js';
import { checkSha256Trailer, openSnapshotFile, walkSnapshot } from './snapshot-file.js';

export interface RestoreOptions {
  readonly from: string;
  readonly skipHashCheck: boolean;
  /** Progress bars on stderr (a terminal) or nothing. */
  readonly progress: boolean;
}

export class RestoreError extends Error {
  override readonly name = 'RestoreError';
}

export async function restoreDataDir(
  config: TandemConfig,
  options: RestoreOptions,
): Promise<EtcdRestoreResult> {
  if (!existsSync(options.from)) throw new RestoreError(`${options.from}: no such file`);
  if (existsSync(config.dataDir) && readdirSync(config.dataDir).length > 0) {
    throw new RestoreError(
      `data directory ${config.dataDir} is not empty: restore only into a new member's empty data directory`,
    );
  }
  if (config.cluster.state !== 'new') {
    throw new RestoreError('a restore starts a new cluster: set cluster.state: new');
  }
  const bars = options.progress ? new cliProgress.MultiBar(barOptions()) : null;
  try {
    if (!options.skipHashCheck) {
      const size = statSync(options.from).size;
      const verify = bars?.create(size, 0, { task: 'verify ' });
      await checkSha256Trailer(options.from, {
        requireTrailer: true,
        ...(verify === undefined ? {} : { onBytes: (n: number) => verify.update(n) }),
      });
      verify?.update(size);
    }
    const opened = openSnapshotFile(options.from);
    try {
      // The whole file first (every page of every bucket), so damage anywhere is refused.
      const total = (await walkSnapshot(opened.reader)).keyEntries;
      const restore = bars?.create(Math.max(1, total), 0, { task: 'restore' });
      const backend = new LmdbBackend({ path: kvDir(config), durable: true });
      let result: EtcdRestoreResult | null = null;
      let failure: unknown = null;
      try {
        result = restoreEtcdSnapshot(backend, opened.reader, (n) => {
          if (n % 1024 === 0 || n === total) restore?.update(n);
        });
      } catch (error) {
        failure = error;
      }
      await backend.close();
      if (result === null) {
        // Nothing half-restored stays behind: the directory was empty before.
        rmSync(config.dataDir, { recursive: true, force: true });
        throw failure;
      }
      return result;
    } finally {
      opened.close();
    }
  } finally {
    bars?.stop();
  }
}

function barOptions(): cliProgress.Options {
  return {
    ...cliProgress.Presets.shades_classic,
    format: '{task} [{bar}] {percentage}% | {value}/{total}',
    barsize: 30,
    hideCursor: true,
    clearOnComplete: false,
    stream: process.stderr,
  };
}
