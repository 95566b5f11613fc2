/**
 * Snapshot files (hashicorp's SnapshotStore role): each snapshot is one self-checking file,
 * written atomically (atomic.ts), the newest `keep` are kept. Format, little-endian:
 *
 *   0   u32  magic "TNDS"
 *   4   u32  version (1)
 *   8   u32  metadata length in bytes (UTF-8 JSON: index, term, confState)
 *   12  u32  zero
 *   16  u64  data length in bytes
 *   24  metadata, then data
 *   end u32  crc32c of every byte before it
 *
 * JSON for the metadata: it is small, read once per start, and readable with a hex dump.
 * Names are `<index:16 hex>-<term:16 hex>.snap`, so they sort oldest first.
 */
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import type { ConfState, Snapshot, SnapshotMetadata } from '../../raft/types.js';
import { assert } from '../../util/assert.js';
import { readWholeFile, removeTempFiles, writeFileAtomic } from '../atomic.js';
import { ioError, StorageError } from '../errors.js';
import type { FileSystem } from '../fs.js';
import {
  SNAPSHOT_BYTES_MAX,
  SNAPSHOT_METADATA_BYTES_MAX,
  SNAPSHOTS_KEPT_DEFAULT,
} from '../limits.js';
import { getU64, setU64 } from '../wal/format.js';

const MAGIC = 0x53444e54; // "TNDS"
const VERSION = 1;
const HEADER_BYTES = 24;
const TRAILER_BYTES = 4;
const SUFFIX = '.snap';
const BROKEN_SUFFIX = '.broken';
const NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

export interface SnapshotStoreOptions {
  readonly fs: FileSystem;
  readonly dir: string;
  /** Snapshots kept after a save (at least 1). */
  readonly keep?: number;
}

export interface SnapshotLoad {
  /** The newest snapshot that verified (and was accepted), or null. */
  readonly snapshot: Snapshot | null;
  /** Newer files passed over: damaged ones are renamed `*.broken` and named here. */
  readonly skipped: readonly { readonly file: string; readonly reason: string }[];
}

export class SnapshotStore {
  private readonly fs: FileSystem;
  private readonly dir: string;
  private readonly keep: number;

  constructor(options: SnapshotStoreOptions) {
    this.fs = options.fs;
    this.dir = options.dir;
    this.keep = options.keep ?? SNAPSHOTS_KEPT_DEFAULT;
    if (!Number.isSafeInteger(this.keep) || this.keep < 1) {
      throw new StorageError('INVALID_CONFIG', `snapshot keep must be >= 1, got ${this.keep}`);
    }
  }

  /** Creates the directory and removes leftovers of saves that crashed. */
  async init(): Promise<void> {
    try {
      await this.fs.mkdir(this.dir);
      await removeTempFiles(this.fs, this.dir, SUFFIX);
    } catch (error) {
      throw ioError(`snapshot dir ${this.dir}`, error);
    }
  }

  /** Writes the snapshot atomically, then deletes all but the newest `keep`. */
  async save(snapshot: Snapshot): Promise<void> {
    const parts = encodeSnapshotParts(snapshot);
    try {
      await writeFileAtomic(this.fs, this.dir, snapshotName(snapshot.metadata), parts);
      const names = await this.names();
      const dead = names.slice(0, Math.max(0, names.length - this.keep));
      for (const name of dead) await this.fs.unlink(join(this.dir, name));
      if (dead.length > 0) await this.fs.syncDir(this.dir);
    } catch (error) {
      throw ioError(`snapshot save ${snapshotName(snapshot.metadata)}`, error);
    }
  }

  /**
   * Loads the newest snapshot that verifies and that `accept` agrees to (the caller passes the
   * WAL's snapshot marker: a snapshot file newer than what the WAL knows must not be used).
   */
  async load(accept: (metadata: SnapshotMetadata) => boolean = () => true): Promise<SnapshotLoad> {
    const skipped: { file: string; reason: string }[] = [];
    try {
      const names = await this.names();
      for (let i = names.length - 1; i >= 0; i--) {
        const path = join(this.dir, names[i]!);
        const bytes = await readWholeFile(this.fs, path, SNAPSHOT_BYTES_MAX);
        const decoded = bytes === null ? 'missing or too large' : decodeSnapshotFile(bytes);
        if (typeof decoded === 'string') {
          skipped.push({ file: path, reason: decoded });
          await this.fs.rename(path, path + BROKEN_SUFFIX);
          await this.fs.syncDir(this.dir);
          continue;
        }
        if (!accept(decoded.metadata)) {
          skipped.push({ file: path, reason: 'not accepted' });
          continue;
        }
        return { snapshot: decoded, skipped };
      }
      return { snapshot: null, skipped };
    } catch (error) {
      throw ioError(`snapshot load from ${this.dir}`, error);
    }
  }

  /** Snapshot file names, oldest first. */
  async names(): Promise<string[]> {
    const names = (await this.fs.readdir(this.dir)).filter((n) => NAME.test(n));
    return names.sort();
  }
}

export function snapshotName(m: SnapshotMetadata): string {
  return `${m.index.toString(16).padStart(16, '0')}-${m.term.toString(16).padStart(16, '0')}${SUFFIX}`;
}

/**
 * The file as the parts written in order: header and metadata, the data (the snapshot's own
 * bytes, not copied: a multi-megabyte copy into a fresh buffer held the event loop for a tenth
 * of a second on a VM with slow page faults), the trailer with the CRC of everything before it.
 */
export function encodeSnapshotParts(snapshot: Snapshot): Uint8Array[] {
  const { index, term, confState } = snapshot.metadata;
  const metadata = new TextEncoder().encode(JSON.stringify({ index, term, confState }));
  if (metadata.length > SNAPSHOT_METADATA_BYTES_MAX) {
    throw new StorageError('RECORD_TOO_LARGE', `snapshot metadata of ${metadata.length} bytes`);
  }
  const total = HEADER_BYTES + metadata.length + snapshot.data.length + TRAILER_BYTES;
  if (total > SNAPSHOT_BYTES_MAX)
    throw new StorageError('RECORD_TOO_LARGE', `snapshot of ${total} bytes`);
  const head = new Uint8Array(HEADER_BYTES + metadata.length);
  const view = new DataView(head.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, metadata.length, true);
  setU64(view, 16, snapshot.data.length);
  head.set(metadata, HEADER_BYTES);
  const trailer = new Uint8Array(TRAILER_BYTES);
  new DataView(trailer.buffer).setUint32(0, crc32c(snapshot.data, crc32c(head)), true);
  return [head, snapshot.data, trailer];
}

/** The whole file in one buffer (tests, tools); the store writes the parts. */
export function encodeSnapshotFile(snapshot: Snapshot): Uint8Array {
  const parts = encodeSnapshotParts(snapshot);
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  // Check twice (practice 7): the file decodes back (the CRC here is over one buffer, there
  // over two parts).
  assert(typeof decodeSnapshotFile(bytes) !== 'string', 'encoded snapshot verifies');
  return bytes;
}

/** The snapshot, or the reason it is unusable. */
export function decodeSnapshotFile(bytes: Uint8Array): Snapshot | string {
  if (bytes.length < HEADER_BYTES + TRAILER_BYTES) return 'shorter than a header';
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const end = bytes.length - TRAILER_BYTES;
  if (crc32c(bytes.subarray(0, end)) !== view.getUint32(end, true)) return 'checksum mismatch';
  if (view.getUint32(0, true) !== MAGIC || view.getUint32(4, true) !== VERSION)
    return 'bad magic or version';
  const metadataBytes = view.getUint32(8, true);
  const dataBytes = getU64(view, 16);
  if (HEADER_BYTES + metadataBytes + dataBytes !== end)
    return 'lengths disagree with the file size';
  let parsed: unknown;
  try {
    parsed = JSON.parse(
      new TextDecoder().decode(bytes.subarray(HEADER_BYTES, HEADER_BYTES + metadataBytes)),
    );
  } catch {
    return 'metadata is not JSON';
  }
  const metadata = checkMetadata(parsed);
  if (metadata === null) return 'metadata has the wrong shape';
  // A view, not a copy: the file's buffer is the caller's and read once.
  return { metadata, data: bytes.subarray(HEADER_BYTES + metadataBytes, end) };
}

function checkMetadata(value: unknown): SnapshotMetadata | null {
  const m = value as {
    index?: unknown;
    term?: unknown;
    confState?: Partial<Record<keyof ConfState, unknown>>;
  };
  if (
    !isUint(m?.index) ||
    !isUint(m.term) ||
    typeof m.confState !== 'object' ||
    m.confState === null
  )
    return null;
  const c = m.confState;
  const lists = [c.voters, c.learners, c.votersOutgoing, c.learnersNext];
  if (!lists.every((l) => Array.isArray(l) && l.every(isUint)) || typeof c.autoLeave !== 'boolean')
    return null;
  return { index: m.index, term: m.term, confState: c as unknown as ConfState };
}

function isUint(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}
