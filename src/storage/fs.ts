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
 * of microseconds) is noise next to a flush.
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

export interface FileHandle {
  readonly path: string;
  /** Writes all of `data` at byte `position` (short writes are retried until done or failed). */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Reads up to `into.length` bytes at `position`; returns the count (less only at end of file). */
  read(into: Uint8Array, position: number): Promise<number>;
  /** Flushes data and the metadata needed to read it back (size), not timestamps. */
  datasync(): Promise<void>;
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
  open(path: string, mode: OpenMode): Promise<FileHandle>;
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
  constructor(
    readonly path: string,
    private readonly handle: fsp.FileHandle,
  ) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    assertUint(position, 'write position');
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(
        data,
        done,
        data.length - done,
        position + done,
      );
      assert(bytesWritten > 0, 'write made no progress');
      done += bytesWritten;
    }
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

  close(): Promise<void> {
    return this.handle.close();
  }
}

export class NodeFileSystem implements FileSystem {
  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    return new NodeFileHandle(path, await fsp.open(path, OPEN_FLAGS[mode], 0o644));
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
