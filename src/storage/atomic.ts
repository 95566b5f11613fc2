/**
 * Whole-file helpers for state kept outside the WAL (snapshots, and the copies recovery clones).
 * Atomic replace follows hashicorp's file_snapshot.go: write a temp file, fsync it, rename it
 * over the final name, fsync the directory. A crash at any point leaves the old file or the new
 * one, never a mix; the leftover temp file is removed at the next open.
 */
import { join } from 'node:path';
import { assert } from '../util/assert.js';
import type { FileSystem } from './fs.js';

export const TMP_SUFFIX = '.tmp';

export async function writeFileAtomic(
  fs: FileSystem,
  dir: string,
  name: string,
  data: Uint8Array | readonly Uint8Array[],
): Promise<void> {
  assert(!name.endsWith(TMP_SUFFIX), 'final names never look temporary');
  const tmp = join(dir, name + TMP_SUFFIX);
  const handle = await fs.open(tmp, 'create');
  try {
    // Parts are written in order, so a large body needs no copy into one buffer.
    let at = 0;
    for (const part of data instanceof Uint8Array ? [data] : data) {
      await handle.write(part, at);
      at += part.length;
    }
    // fsync, not fdatasync: the file is new, its size and allocation are metadata we need.
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmp, join(dir, name));
  await fs.syncDir(dir);
}

/** Reads a whole file, refusing files above `maxBytes` (the caller's named limit). */
export async function readWholeFile(
  fs: FileSystem,
  path: string,
  maxBytes: number,
): Promise<Uint8Array | null> {
  const stat = await fs.stat(path);
  if (stat === null) return null;
  if (stat.sizeBytes > maxBytes) return null;
  const bytes = new Uint8Array(stat.sizeBytes);
  const handle = await fs.open(path, 'read');
  try {
    const n = await handle.read(bytes, 0);
    return n === bytes.length ? bytes : bytes.subarray(0, n);
  } finally {
    await handle.close();
  }
}

/** Removes `*<suffix>.tmp` leftovers of writes that crashed; syncs the directory if any. */
export async function removeTempFiles(
  fs: FileSystem,
  dir: string,
  suffix: string,
): Promise<number> {
  let removed = 0;
  for (const name of await fs.readdir(dir)) {
    if (!name.endsWith(suffix + TMP_SUFFIX)) continue;
    await fs.unlink(join(dir, name));
    removed++;
  }
  if (removed > 0) await fs.syncDir(dir);
  return removed;
}
