/**
 * Snapshot files on disk, as `etcdctl snapshot save` writes them and tandem's backups do: an
 * etcd database (bbolt) followed by the SHA-256 of it (32 bytes; the file is then n × 512 + 32
 * bytes long, which is how etcd tells a trailer is there). Writing (streamed, fsynced, renamed),
 * checking (trailer, then every page of every bucket) and opening for a restore.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { SnapshotStream } from '../server/contract.js';
import {
  BboltReader,
  type PageSource,
  type BboltReader as Reader,
} from '../storage/bbolt/reader.js';
import { StorageError } from '../storage/errors.js';

export const SHA256_BYTES = 32;
const SECTOR_BYTES = 512;
/** Reads while checking a file; the event loop gets a turn after each. */
const READ_BYTES = 1024 * 1024;
/** The longest a writer or checker keeps the event loop between two turns it gives away. */
const EVENT_LOOP_SLICE_MS = 10;
/** Entries walked between two looks at the clock. */
const WALK_ENTRIES_PER_CHECK = 256;

/** etcd's hasChecksum: a saved snapshot is page-aligned data plus a 32-byte digest. */
export function hasSha256Trailer(sizeBytes: number): boolean {
  return sizeBytes % SECTOR_BYTES === SHA256_BYTES;
}

export interface WrittenSnapshot {
  readonly path: string;
  readonly bytes: number;
  readonly revision: number;
}

/**
 * Streams a snapshot to `path`: into `path.part`, the SHA-256 trailer after it, fsync, rename,
 * directory fsync (a crash leaves the old file or the new one, never half of one).
 */
export async function writeSnapshotFile(
  stream: SnapshotStream,
  path: string,
  options: { readonly onBytes?: (bytes: number) => void; readonly signal?: AbortSignal } = {},
): Promise<WrittenSnapshot> {
  const part = `${path}.part`;
  const file = await open(part, 'w', 0o600);
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    let pausedAtMs = performance.now();
    for await (const chunk of stream.chunks) {
      if (chunk.length > 0) {
        hash.update(chunk);
        await file.write(chunk);
        bytes += chunk.length;
        options.onBytes?.(bytes);
      }
      if (options.signal?.aborted === true) {
        throw new StorageError('IO', `${path}: snapshot write stopped (shutting down)`);
      }
      if (performance.now() - pausedAtMs > EVENT_LOOP_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        pausedAtMs = performance.now();
      }
    }
    await file.write(hash.digest());
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(part, path);
  await syncDir(dirname(path));
  return { path, bytes: bytes + SHA256_BYTES, revision: stream.header.revision };
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A snapshot file opened for reading its database (the trailer left out). */
export interface OpenSnapshot {
  readonly reader: Reader;
  /** The database's bytes (the file less its trailer). */
  readonly dataBytes: number;
  readonly hasTrailer: boolean;
  close(): void;
}

export function openSnapshotFile(path: string): OpenSnapshot {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const hasTrailer = hasSha256Trailer(size);
    const dataBytes = hasTrailer ? size - SHA256_BYTES : size;
    const source: PageSource = {
      sizeBytes: dataBytes,
      read: (offset, length) => {
        const n = Math.max(0, Math.min(length, dataBytes - offset));
        const buffer = new Uint8Array(n);
        let done = 0;
        while (done < n) {
          const got = readSync(fd, buffer, done, n - done, offset + done);
          if (got === 0) break;
          done += got;
        }
        return buffer.subarray(0, done);
      },
    };
    return { reader: new BboltReader(source), dataBytes, hasTrailer, close: () => closeSync(fd) };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/**
 * Checks the SHA-256 trailer against the data before it, reading the file a slice at a time.
 * Throws SNAPSHOT_CORRUPT when the digest differs, or when there is none and `requireTrailer`.
 */
export async function checkSha256Trailer(
  path: string,
  options: { readonly requireTrailer: boolean; readonly onBytes?: (bytes: number) => void },
): Promise<{ readonly hasTrailer: boolean; readonly dataBytes: number }> {
  const file = await open(path, 'r');
  try {
    const size = (await file.stat()).size;
    if (!hasSha256Trailer(size)) {
      if (options.requireTrailer) {
        throw new StorageError(
          'SNAPSHOT_CORRUPT',
          `${path}: no SHA-256 trailer (${size} bytes is not n × 512 + 32); a database copied from a data directory needs --skip-hash-check`,
        );
      }
      return { hasTrailer: false, dataBytes: size };
    }
    const dataBytes = size - SHA256_BYTES;
    const hash = createHash('sha256');
    const buffer = new Uint8Array(READ_BYTES);
    for (let at = 0; at < dataBytes; ) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(READ_BYTES, dataBytes - at), at);
      if (bytesRead === 0)
        throw new StorageError('SNAPSHOT_CORRUPT', `${path}: shorter than it was`);
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
      options.onBytes?.(at);
    }
    const trailer = new Uint8Array(SHA256_BYTES);
    await file.read(trailer, 0, SHA256_BYTES, dataBytes);
    if (!hash.digest().equals(trailer)) {
      throw new StorageError(
        'SNAPSHOT_CORRUPT',
        `${path}: the SHA-256 of the data does not match the file's trailer (damaged or truncated)`,
      );
    }
    return { hasTrailer: true, dataBytes };
  } finally {
    await file.close();
  }
}

export interface SnapshotSummary {
  /** etcd's `snapshot status` revision: the main revision of the key bucket's last entry. */
  readonly revision: number;
  /** Entries of every bucket (etcd's "total keys"). */
  readonly totalKeys: number;
  /** Entries of the key bucket (revisions of keys). */
  readonly keyEntries: number;
  readonly buckets: readonly string[];
}

/**
 * Walks every entry of every bucket (each page read and checked once), giving the event loop a
 * turn every few milliseconds. Throws SNAPSHOT_CORRUPT on any damage the reader finds.
 */
export async function walkSnapshot(reader: Reader): Promise<SnapshotSummary> {
  let totalKeys = 0;
  let keyEntries = 0;
  let revision = 0;
  const buckets: string[] = [];
  let pausedAtMs = performance.now();
  for (const name of reader.bucketNames()) {
    const label = new TextDecoder().decode(name);
    buckets.push(label);
    for (const [key] of reader.bucket(name) ?? []) {
      totalKeys++;
      if (label === 'key') keyEntries++;
      if (label === 'key' && key.length >= 8) {
        revision = Number(new DataView(key.buffer, key.byteOffset, 8).getBigUint64(0));
      }
      if (
        totalKeys % WALK_ENTRIES_PER_CHECK === 0 &&
        performance.now() - pausedAtMs > EVENT_LOOP_SLICE_MS
      ) {
        await new Promise((resolve) => setImmediate(resolve));
        pausedAtMs = performance.now();
      }
    }
  }
  return { revision, totalKeys, keyEntries, buckets };
}

/** The whole check of a written snapshot file: its trailer, then its database. */
export async function verifySnapshotFile(path: string): Promise<SnapshotSummary> {
  await checkSha256Trailer(path, { requireTrailer: true });
  const opened = openSnapshotFile(path);
  try {
    return await walkSnapshot(opened.reader);
  } finally {
    opened.close();
  }
}
