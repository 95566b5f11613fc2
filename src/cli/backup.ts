/**
 * Backups: snapshot files in etcd's format (snapshot-file.ts) that `tandem restore --from` and
 * `etcdctl snapshot restore` both take.
 *
 * - Scheduled (`backup: { every, keep, dir }`): the member's tick schedule asks every `every`;
 *   only the leader writes (one backup per cluster per period, from the member whose state is
 *   newest). The snapshot streams from a read view to `<name>.part`, fsynced and renamed; the
 *   file is then read back (SHA-256 trailer and every page) before older backups beyond `keep`
 *   are removed, so a bad write never costs a good backup. One backup at a time.
 * - `tandem backup now`: any member's Snapshot RPC, saved and checked the same way, with a
 *   progress bar.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import type { Logger } from 'pino';
import { hostPort, loadGrpc } from '../api/grpc-client.js';
import { loadEtcdProto } from '../api/proto.js';
import type { SnapshotStream } from '../server/contract.js';
import {
  type SnapshotSummary,
  verifySnapshotFile,
  type WrittenSnapshot,
  writeSnapshotFile,
} from './snapshot-file.js';

const BACKUP_PREFIX = 'tandem-backup-';
const BACKUP_SUFFIX = '.db';
const BACKUP_NAME = /^tandem-backup-\d{8}T\d{9}Z-r\d+\.db$/;

/** `tandem-backup-20261204T150622123Z-r42.db`: names sort in time order. */
export function backupName(wallMs: number, revision: number): string {
  const stamp = new Date(wallMs).toISOString().replace(/[-:.]/g, '');
  return `${BACKUP_PREFIX}${stamp}-r${revision}${BACKUP_SUFFIX}`;
}

/** The backups in `dir`, oldest first. */
export function listBackups(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => BACKUP_NAME.test(n)).sort();
}

/** Removes all but the newest `keep` backups, and leftovers of interrupted writes. */
export function pruneBackups(dir: string, keep: number): string[] {
  const backups = listBackups(dir);
  const removed = backups.slice(0, Math.max(0, backups.length - keep));
  for (const name of readdirSync(dir)) {
    if (name.startsWith(BACKUP_PREFIX) && name.endsWith('.part')) removed.push(name);
  }
  for (const name of removed) rmSync(join(dir, name), { force: true });
  return removed;
}

export interface ScheduledBackupsOptions {
  readonly dir: string;
  readonly keep: number;
  readonly snapshot: () => Promise<SnapshotStream>;
  readonly isLeader: () => boolean;
  readonly wallNowMs: () => number;
  readonly logger: Logger;
}

export class ScheduledBackups {
  private running: Promise<void> | null = null;
  private readonly abort = new AbortController();

  constructor(private readonly o: ScheduledBackupsOptions) {}

  /** The schedule's call: a backup if this member leads and none is being written. */
  tick(): void {
    if (this.running !== null || !this.o.isLeader() || this.abort.signal.aborted) return;
    this.running = this.backupNow()
      .then(
        (b) => this.o.logger.info(b, 'backup written and verified'),
        (error: unknown) => {
          if (!this.abort.signal.aborted) this.o.logger.error({ err: error }, 'backup failed');
        },
      )
      .finally(() => {
        this.running = null;
      });
  }

  async backupNow(): Promise<WrittenSnapshot & SnapshotSummary & { removed: string[] }> {
    mkdirSync(this.o.dir, { recursive: true });
    const stream = await this.o.snapshot();
    const path = join(this.o.dir, backupName(this.o.wallNowMs(), stream.header.revision));
    const written = await writeSnapshotFile(stream, path, { signal: this.abort.signal });
    const summary = await verifySnapshotFile(path).catch((error: unknown) => {
      rmSync(path, { force: true });
      throw error;
    });
    const removed = pruneBackups(this.o.dir, this.o.keep);
    return { ...written, ...summary, removed };
  }

  /** Stops scheduling; an interrupted write leaves only a `.part` file (pruned later). */
  async close(): Promise<void> {
    this.abort.abort();
    await this.running;
  }
}

// ---------------------------------------------------------------------------------------------
// tandem backup now

interface SnapshotMessage {
  readonly blob: Buffer;
  readonly remainingBytes: string;
}

/**
 * Saves a member's Snapshot RPC to `path` (the server's SHA-256 trailer included, as etcdctl
 * saves it), then checks the file. A progress bar on stderr when `progress`.
 */
export async function saveSnapshotFromEndpoint(
  endpoint: string,
  path: string,
  options: { readonly progress: boolean; readonly timeoutMs: number },
): Promise<SnapshotSummary & { readonly bytes: number }> {
  const grpc = await loadGrpc();
  const pkg = grpc.loadPackageDefinition(loadEtcdProto()) as unknown as {
    etcdserverpb: { Maintenance: new (target: string, creds: unknown) => MaintenanceClient };
  };
  const client = new pkg.etcdserverpb.Maintenance(
    hostPort(endpoint),
    grpc.credentials.createInsecure(),
  );
  const bar = options.progress
    ? new cliProgress.SingleBar({
        ...cliProgress.Presets.shades_classic,
        format: 'backup [{bar}] {percentage}% | {value_kb}/{total_kb} KiB',
        stream: process.stderr,
        hideCursor: true,
      })
    : null;
  const part = `${path}.part`;
  const file = await open(part, 'w', 0o600);
  let bytes = 0;
  try {
    const call = client.Snapshot({}, { deadline: Date.now() + options.timeoutMs });
    bar?.start(1, 0, { value_kb: 0, total_kb: '?' });
    for await (const message of call as AsyncIterable<SnapshotMessage>) {
      await file.write(message.blob);
      bytes += message.blob.length;
      const total = bytes + Number(message.remainingBytes);
      bar?.setTotal(Math.max(total, 1));
      bar?.update(bytes, {
        value_kb: Math.round(bytes / 1024),
        total_kb: Math.round(total / 1024),
      });
    }
    await file.sync();
  } finally {
    bar?.stop();
    await file.close();
    client.close();
  }
  await rename(part, path);
  return { ...(await verifySnapshotFile(path)), bytes };
}

interface MaintenanceClient {
  Snapshot(req: object, options: { deadline: number }): AsyncIterable<unknown>;
  close(): void;
}
