/**
 * The small file-system interface storage is written against (it becomes part of src/io's Disk),
 * and its real implementation on node:fs.
 *
 * Why the promise API and not the sync one: group commit lives on the event loop not blocking
 * while an fdatasync is in flight. With `fs.fdatasyncSync` the loop stalls for the whole flush
 * (milliseconds), no proposal or network message arrives meanwhile, so every Ready stays tiny and
 * throughput is capped at one small batch per flush. With the promise API the flush runs on a
 * libuv pool thread; proposals keep arriving and the next Ready carries all of them. A mirror
 * also needs it: both copies are written and flushed in parallel. The cost (a thread hop, tens
 * of microseconds idle, hundreds on a busy machine) is paid once per WAL save, not twice: a
 * handle opened with `durableWrites` writes and flushes in one pool job (`writeDurable`).
 */
import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { assert, assertUint } from '../util/assert.js';
import { PREALLOCATE_CHUNK_BYTES } from './limits.js';

/**
 * - `read`: read only; the file must exist.
 * - `write`: read and write; the file must exist.
 * - `create`: read and write; created if missing, truncated if present (temp files only).
 */
export type OpenMode = 'read' | 'write' | 'create';

export interface OpenOptions {
  /**
   * Give the handle `writeDurable` where the platform can (O_DSYNC): for files written and
   * flushed on the latency path (the WAL). A file system may ignore it: callers fall back to
   * `write` then `datasync`.
   */
  readonly durableWrites?: boolean;
}

/** Errors of a durable write raised before anything was left to flush: no space, too large. */
const FAILED_BEFORE_SYNC_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/**
 * True when a failed `writeDurable` failed as a plain write would (nothing flushed was lost: the
 * file stays usable once the written prefix is overwritten); false when the flush itself may
 * have failed, which the caller must treat as a failed fdatasync (the data may be gone).
 */
export function failedBeforeSync(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && FAILED_BEFORE_SYNC_CODES.has(code);
}

export interface FileHandle {
  readonly path: string;
  /** Writes all of `data` at byte `position` (short writes are retried until done or failed). */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Reads up to `into.length` bytes at `position`; returns the count (less only at end of file). */
  read(into: Uint8Array, position: number): Promise<number>;
  /** Flushes data and the metadata needed to read it back (size), not timestamps. */
  datasync(): Promise<void>;
  /**
   * Present when opened with `durableWrites` (and supported): `write` then `datasync` of this
   * range in one pool-thread job (a second descriptor opened with O_DSYNC), one event-loop round
   * trip fewer. Resolves once `data` is durable. On a rejection part of `data` may be written
   * and nothing is known durable; see `failedBeforeSync` for what the caller may still trust.
   */
  writeDurable?(data: Uint8Array, position: number): Promise<void>;
  /** Flushes data and all metadata. */
  sync(): Promise<void>;
  /** Sets the size: shrinking drops bytes; growing adds zeros (sparse: blocks not allocated). */
  truncate(sizeBytes: number): Promise<void>;
  /**
   * Makes the file at least `sizeBytes` long with real, zeroed blocks, so later writes in that
   * range change no file metadata and an fdatasync flushes data only.
   */
  allocate(sizeBytes: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export interface FileStat {
  readonly sizeBytes: number;
  readonly isDirectory: boolean;
}

export interface FileSystem {
  open(path: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle>;
  /** Atomic replace (POSIX rename); durable only once the directory is synced. */
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Entry names (not paths), in no particular order. */
  readdir(dir: string): Promise<string[]>;
  /** Creates the directory and its parents if missing. */
  mkdir(dir: string): Promise<void>;
  /** fsync of a directory: makes creates, renames and unlinks in it durable. */
  syncDir(dir: string): Promise<void>;
  /** null when the path does not exist. */
  stat(path: string): Promise<FileStat | null>;
}

const OPEN_FLAGS: Readonly<Record<OpenMode, number>> = {
  read: constants.O_RDONLY,
  write: constants.O_RDWR,
  create: constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC,
};

/** Shared, never written: the source of preallocation zeros. */
const ZEROS = new Uint8Array(PREALLOCATE_CHUNK_BYTES);

class NodeFileHandle implements FileHandle {
  /** Present when opened with `durableWrites`: see `writeDurable`. */
  readonly writeDurable?: (data: Uint8Array, position: number) => Promise<void>;

  constructor(
    readonly path: string,
    private readonly handle: fsp.FileHandle,
    /** The same file opened again with O_DSYNC: every write on it returns durable. */
    private readonly dsync: fsp.FileHandle | null,
  ) {
    if (dsync !== null) this.writeDurable = (data, position) => writeAll(dsync, data, position);
  }

  write(data: Uint8Array, position: number): Promise<void> {
    return writeAll(this.handle, data, position);
  }

  async read(into: Uint8Array, position: number): Promise<number> {
    assertUint(position, 'read position');
    let done = 0;
    while (done < into.length) {
      const { bytesRead } = await this.handle.read(into, done, into.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  sync(): Promise<void> {
    return this.handle.sync();
  }

  truncate(sizeBytes: number): Promise<void> {
    assertUint(sizeBytes, 'truncate size');
    return this.handle.truncate(sizeBytes);
  }

  /**
   * Node has no fallocate(2), so the range is written with zeros: slower once, at segment
   * creation (off the per-record path), and it allocates real blocks, unlike a sparse ftruncate,
   * which would make every later fdatasync also commit block allocation in the journal.
   */
  async allocate(sizeBytes: number): Promise<void> {
    assertUint(sizeBytes, 'allocate size');
    let position = await this.size();
    while (position < sizeBytes) {
      const n = Math.min(ZEROS.length, sizeBytes - position);
      await this.write(ZEROS.subarray(0, n), position);
      position += n;
    }
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  async close(): Promise<void> {
    try {
      await this.dsync?.close();
    } finally {
      await this.handle.close();
    }
  }
}

/** Writes all of `data` at `position` (short writes are retried until done or failed). */
async function writeAll(handle: fsp.FileHandle, data: Uint8Array, position: number): Promise<void> {
  assertUint(position, 'write position');
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    assert(bytesWritten > 0, 'write made no progress');
    done += bytesWritten;
  }
}

export class NodeFileSystem implements FileSystem {
  async open(path: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    const handle = await fsp.open(path, OPEN_FLAGS[mode], 0o644);
    // Opened after the first (which may have created the file): the same inode, so a later
    // rename of the path changes nothing. O_DSYNC is absent on some platforms: no writeDurable.
    const dsyncFlag = constants.O_DSYNC as number | undefined;
    if (options.durableWrites !== true || mode === 'read' || dsyncFlag === undefined) {
      return new NodeFileHandle(path, handle, null);
    }
    try {
      const dsync = await fsp.open(path, constants.O_RDWR | dsyncFlag);
      return new NodeFileHandle(path, handle, dsync);
    } catch (error) {
      await handle.close().catch(() => {});
      throw error;
    }
  }

  rename(from: string, to: string): Promise<void> {
    return fsp.rename(from, to);
  }

  unlink(path: string): Promise<void> {
    return fsp.unlink(path);
  }

  readdir(dir: string): Promise<string[]> {
    return fsp.readdir(dir);
  }

  async mkdir(dir: string): Promise<void> {
    await fsp.mkdir(dir, { recursive: true });
  }

  async syncDir(dir: string): Promise<void> {
    const handle = await fsp.open(dir, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async stat(path: string): Promise<FileStat | null> {
    try {
      const s = await fsp.stat(path);
      return { sizeBytes: s.size, isDirectory: s.isDirectory() };
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ENOENT') return null;
      throw error;
    }
  }
}
