/**
 * A fault-injecting FileSystem for tests: it wraps a real one (so tests run on real files) and
 * keeps an undo log of everything not yet made durable, so a "power loss" can put each file and
 * directory back to its last synced state.
 *
 * Faults:
 * - `crashAfterBytes(n)`: the write that crosses n bytes (counted over all writes since arming)
 *   lands only its prefix, then every call fails with ECRASHED until `restart()`: a process
 *   crash in the middle of a write.
 * - `restart({ powerLoss })`: ends the crash. With `powerLoss`, unsynced writes, truncations,
 *   creates, renames and unlinks are undone (all of them, or with `rng`, a random prefix of each
 *   file's unsynced writes survives and the next one is torn at a random byte).
 * - `tearNextWrite(prefix)`: that write returns success, but only `prefix` bytes of it survive a
 *   power loss that comes before it is synced.
 * - `failNextWrite(code, landBytes)` / `failNextSync(code)`: ENOSPC or EIO, optionally only for
 *   paths containing a string (say, the mirror directory); a failed write may land a prefix.
 * - `flipBit(path, offset, bit)`: media corruption, applied to the durable bytes directly.
 *
 * A handle opened with `durableWrites` has `writeDurable` (O_DSYNC): that write alone becomes
 * durable, not the unsynced writes before it, which the worst case of O_DSYNC is (a real disk
 * may flush the pages it shares with them too).
 *
 * Test only: undo data is kept in memory (whole contents of unlinked or overwritten files).
 */
import { dirname } from 'node:path';
import { assert, assertUint } from '../util/assert.js';
import type { Random } from '../util/prng.js';
import type { FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from './fs.js';
import { PREALLOCATE_CHUNK_BYTES } from './limits.js';

export type InjectedErrorCode = 'ENOSPC' | 'EIO';

/** An errno-shaped error, as node:fs throws them. */
export function injectedError(code: string, syscall: string, path: string): Error {
  return Object.assign(new Error(`${code}: injected fault, ${syscall} '${path}'`), {
    code,
    syscall,
    path,
  });
}

/** One undoable change to a file's bytes or size, recorded before it reaches the real file. */
type Undo =
  | { kind: 'write'; offset: number; old: Uint8Array; length: number; tearAt: number | null }
  | { kind: 'size'; size: number; tail: Uint8Array };

interface FileState {
  sizeBytes: number;
  /** Unsynced changes, oldest first; cleared by datasync/sync. */
  undo: Undo[];
}

/** Unsynced directory changes, undone newest first on power loss; cleared by syncDir. */
type DirOp =
  | { kind: 'create'; path: string }
  | { kind: 'rename'; from: string; to: string; overwritten: Saved | null }
  | { kind: 'unlink'; path: string; saved: Saved };

interface Saved {
  content: Uint8Array;
  state: FileState;
}

interface Armed {
  code: InjectedErrorCode;
  pathIncludes: string | null;
}

export interface WriteEvent {
  readonly path: string;
  readonly offset: number;
  readonly length: number;
  /** Total bytes written through this file system after this write. */
  readonly totalBytes: number;
}

export class FaultyFileSystem implements FileSystem {
  /** Bytes that reached the real files through write() (and allocate()), over the whole run. */
  totalBytesWritten = 0;
  /** fdatasync calls that reached the real files, over the whole run. */
  syncCount = 0;
  /** When set, every write is recorded here (tests derive crash points from it). */
  trace: WriteEvent[] | null = null;
  private crashed = false;
  /** Handles opened before a restart are dead: a crashed process has no file descriptors. */
  private epoch = 0;
  private crashAtBytes: number | null = null;
  private nextWriteFault: (Armed & { landBytes: number }) | null = null;
  private nextSyncFault: Armed | null = null;
  private nextWriteTear: number | null = null;
  private readonly files = new Map<string, FileState>();
  private readonly dirOps = new Map<string, DirOp[]>();
  private readonly open_ = new Set<FileHandle>();

  constructor(readonly inner: FileSystem) {}

  get currentEpoch(): number {
    return this.epoch;
  }

  get isCrashed(): boolean {
    return this.crashed;
  }

  crashAfterBytes(bytes: number): void {
    assertUint(bytes, 'crash point');
    this.crashAtBytes = this.totalBytesWritten + bytes;
  }

  failNextWrite(code: InjectedErrorCode, landBytes = 0, pathIncludes: string | null = null): void {
    this.nextWriteFault = { code, landBytes, pathIncludes };
  }

  failNextSync(code: InjectedErrorCode, pathIncludes: string | null = null): void {
    this.nextSyncFault = { code, pathIncludes };
  }

  tearNextWrite(prefixBytes: number): void {
    assertUint(prefixBytes, 'tear prefix');
    this.nextWriteTear = prefixBytes;
  }

  /** Flips one bit of the durable bytes (the file should be closed or synced). */
  async flipBit(path: string, offset: number, bit: number): Promise<void> {
    assert(bit >= 0 && bit < 8, 'bit in 0..7');
    const handle = await this.inner.open(path, 'write');
    try {
      const byte = new Uint8Array(1);
      assert((await handle.read(byte, offset)) === 1, `flipBit past end of ${path}`);
      byte[0]! ^= 1 << bit;
      await handle.write(byte, offset);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  /** Ends a crash (or simulates one now, then ends it). See the module comment. */
  async restart(options: { powerLoss: boolean; rng?: Random }): Promise<void> {
    this.crashed = false;
    this.crashAtBytes = null;
    this.nextWriteFault = null;
    this.nextSyncFault = null;
    this.nextWriteTear = null;
    this.epoch++;
    for (const handle of this.open_) await handle.close().catch(() => {});
    this.open_.clear();
    if (options.powerLoss) {
      const dirs = [...this.dirOps.values()].flat();
      // Undo directory changes newest first: at most one op per name is in flight in practice.
      for (let i = dirs.length - 1; i >= 0; i--) await this.undoDirOp(dirs[i]!);
      for (const [path, state] of this.files) await this.undoFile(path, state, options.rng);
    }
    this.files.clear();
    this.dirOps.clear();
  }

  // -------------------------------------------------------------------------------------------
  // FileSystem

  async open(path: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    this.checkAlive('open', path);
    const before = await this.inner.stat(path);
    // O_TRUNC destroys the old bytes: read them first so a power loss can put them back.
    const truncated =
      mode === 'create' && before !== null && before.sizeBytes > 0
        ? await readAll(this.inner, path)
        : null;
    const handle = await this.inner.open(path, mode);
    this.open_.add(handle);
    let state = this.files.get(path);
    if (state === undefined) {
      state = { sizeBytes: before?.sizeBytes ?? 0, undo: [] };
      this.files.set(path, state);
    }
    if (before === null) this.dirOp(path, { kind: 'create', path });
    if (truncated !== null) {
      state.undo.push({ kind: 'size', size: truncated.length, tail: truncated });
      state.sizeBytes = 0;
    }
    const durable = options.durableWrites === true && mode !== 'read';
    return new FaultyFileHandle(this, handle, state, this.epoch, durable);
  }

  async rename(from: string, to: string): Promise<void> {
    this.checkAlive('rename', from);
    const target = await this.inner.stat(to);
    const overwritten = target === null ? null : await this.save(to);
    await this.inner.rename(from, to);
    const state = this.files.get(from);
    this.files.delete(from);
    if (state !== undefined) this.files.set(to, state);
    this.dirOp(to, { kind: 'rename', from, to, overwritten });
  }

  async unlink(path: string): Promise<void> {
    this.checkAlive('unlink', path);
    const saved = await this.save(path);
    await this.inner.unlink(path);
    this.files.delete(path);
    this.dirOp(path, { kind: 'unlink', path, saved });
  }

  async readdir(dir: string): Promise<string[]> {
    this.checkAlive('readdir', dir);
    return this.inner.readdir(dir);
  }

  async mkdir(dir: string): Promise<void> {
    this.checkAlive('mkdir', dir);
    return this.inner.mkdir(dir);
  }

  async syncDir(dir: string): Promise<void> {
    this.checkAlive('fsync', dir);
    this.maybeFailSync(dir);
    await this.inner.syncDir(dir);
    this.dirOps.delete(dir);
  }

  async stat(path: string): Promise<FileStat | null> {
    this.checkAlive('stat', path);
    return this.inner.stat(path);
  }

  // -------------------------------------------------------------------------------------------
  // Used by FaultyFileHandle

  checkAlive(syscall: string, path: string, epoch = this.epoch): void {
    if (this.crashed || epoch !== this.epoch) throw injectedError('ECRASHED', syscall, path);
  }

  maybeFailSync(path: string): void {
    const fault = this.nextSyncFault;
    if (fault === null || !matches(fault, path)) return;
    this.nextSyncFault = null;
    throw injectedError(fault.code, 'fsync', path);
  }

  /**
   * Decides how much of a write lands: all of it, a prefix then an error, or a prefix then a
   * crash. Returns the byte count to pass to the real file and the error to throw after.
   */
  planWrite(
    path: string,
    length: number,
  ): { land: number; error: Error | null; tear: number | null } {
    let land = length;
    let error: Error | null = null;
    const fault = this.nextWriteFault;
    if (fault !== null && matches(fault, path)) {
      this.nextWriteFault = null;
      land = Math.min(length, fault.landBytes);
      error = injectedError(fault.code, 'write', path);
    }
    if (this.crashAtBytes !== null && this.totalBytesWritten + land > this.crashAtBytes) {
      land = this.crashAtBytes - this.totalBytesWritten;
      error = injectedError('ECRASHED', 'write', path);
      this.crashed = true;
    }
    const tear = this.nextWriteTear;
    this.nextWriteTear = null;
    return { land, error, tear };
  }

  recordWrite(path: string, offset: number, length: number): void {
    this.totalBytesWritten += length;
    this.trace?.push({ path, offset, length, totalBytes: this.totalBytesWritten });
  }

  forget(handle: FileHandle): void {
    this.open_.delete(handle);
  }

  // -------------------------------------------------------------------------------------------

  private dirOp(path: string, op: DirOp): void {
    const dir = dirname(path);
    let ops = this.dirOps.get(dir);
    if (ops === undefined) {
      ops = [];
      this.dirOps.set(dir, ops);
    }
    ops.push(op);
  }

  private async save(path: string): Promise<Saved> {
    const state = this.files.get(path) ?? { sizeBytes: 0, undo: [] };
    return { content: await readAll(this.inner, path), state };
  }

  private async restore(path: string, saved: Saved): Promise<void> {
    const handle = await this.inner.open(path, 'create');
    try {
      await handle.write(saved.content, 0);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    this.files.set(path, saved.state);
  }

  private async undoDirOp(op: DirOp): Promise<void> {
    switch (op.kind) {
      case 'create':
        if ((await this.inner.stat(op.path)) !== null) await this.inner.unlink(op.path);
        this.files.delete(op.path);
        return;
      case 'rename': {
        const state = this.files.get(op.to);
        await this.inner.rename(op.to, op.from);
        this.files.delete(op.to);
        if (state !== undefined) this.files.set(op.from, state);
        if (op.overwritten !== null) await this.restore(op.to, op.overwritten);
        return;
      }
      case 'unlink':
        await this.restore(op.path, op.saved);
        return;
    }
  }

  private async undoFile(path: string, state: FileState, rng: Random | undefined): Promise<void> {
    if (state.undo.length === 0 || (await this.inner.stat(path)) === null) return;
    // With rng, a random prefix of the unsynced changes reached the platter; the first change
    // past it may be torn at any byte (a prefix of it landed).
    // A write marked by tearNextWrite lands torn, with every unsynced change before it.
    const torn = state.undo.findIndex((u) => u.kind === 'write' && u.tearAt !== null);
    const kept = torn >= 0 ? torn : rng === undefined ? 0 : rng.int(state.undo.length + 1);
    const handle = await this.inner.open(path, 'write');
    try {
      for (let i = state.undo.length - 1; i >= kept; i--) {
        const u = state.undo[i]!;
        let tearAt = 0;
        if (u.kind === 'write' && i === kept) {
          if (u.tearAt !== null) tearAt = u.tearAt;
          else if (rng !== undefined && rng.int(2) === 1) tearAt = rng.int(u.length + 1);
        }
        await undoOne(handle, u, tearAt);
      }
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }
}

/** Undoes one change; for a write, the first `keepBytes` bytes of it stay (a torn write). */
async function undoOne(handle: FileHandle, u: Undo, keepBytes: number): Promise<void> {
  if (u.kind === 'size') {
    await handle.truncate(u.size);
    if (u.tail.length > 0) await handle.write(u.tail, u.size - u.tail.length);
    return;
  }
  const keep = Math.min(keepBytes, u.length);
  if (keep < u.old.length) await handle.write(u.old.subarray(keep), u.offset + keep);
  // Bytes past the old end of file: a 'size' undo follows (earlier in the log) unless this
  // write is the torn one, in which case its lost part reads as zeros.
  const fresh = u.length - Math.max(keep, u.old.length);
  if (fresh > 0) await handle.write(new Uint8Array(fresh), u.offset + Math.max(keep, u.old.length));
}

/**
 * Drops from `undo` what a power loss may no longer take back once [start, end) is durable: the
 * parts of unsynced writes inside it, and size changes that would cut it off.
 */
function keepDurable(undo: Undo[], start: number, end: number): void {
  const kept: Undo[] = [];
  for (const u of undo) {
    if (u.kind === 'size') {
      // A shrink's undo (tail) restores bytes; a growth's undo truncates: never below `end`.
      kept.push(u.tail.length === 0 && u.size < end ? { ...u, size: end } : u);
      continue;
    }
    const uEnd = u.offset + u.length;
    if (uEnd <= start || u.offset >= end) {
      kept.push(u);
      continue;
    }
    // The parts of this write outside [start, end) stay undoable, with their old bytes.
    for (const [from, to] of [
      [u.offset, Math.min(start, uEnd)],
      [Math.max(end, u.offset), uEnd],
    ] as const) {
      if (to <= from) continue;
      const oldFrom = Math.min(from - u.offset, u.old.length);
      const oldTo = Math.min(to - u.offset, u.old.length);
      kept.push({
        kind: 'write',
        offset: from,
        old: u.old.subarray(oldFrom, oldTo),
        length: to - from,
        tearAt: null,
      });
    }
  }
  undo.length = 0;
  undo.push(...kept);
}

function matches(fault: Armed, path: string): boolean {
  return fault.pathIncludes === null || path.includes(fault.pathIncludes);
}

async function readAll(fs: FileSystem, path: string): Promise<Uint8Array> {
  const handle = await fs.open(path, 'read');
  try {
    const buffer = new Uint8Array(await handle.size());
    await handle.read(buffer, 0);
    return buffer;
  } finally {
    await handle.close();
  }
}

class FaultyFileHandle implements FileHandle {
  readonly writeDurable?: (data: Uint8Array, position: number) => Promise<void>;

  constructor(
    private readonly fs: FaultyFileSystem,
    private readonly inner: FileHandle,
    private readonly state: FileState,
    private readonly epoch: number,
    durableWrites: boolean,
  ) {
    if (durableWrites) this.writeDurable = (data, position) => this.writeThenKeep(data, position);
  }

  /**
   * O_DSYNC: the write, then its own bytes (and the file size they need) made durable; the
   * unsynced changes around it stay undoable. A sync fault fails it after the bytes landed.
   */
  private async writeThenKeep(data: Uint8Array, position: number): Promise<void> {
    await this.write(data, position);
    this.fs.maybeFailSync(this.path);
    keepDurable(this.state.undo, position, position + data.length);
    this.fs.syncCount++;
  }

  get path(): string {
    return this.inner.path;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.fs.checkAlive('write', this.path, this.epoch);
    const { land, error, tear } = this.fs.planWrite(this.path, data.length);
    if (land > 0) {
      const end = position + land;
      const oldEnd = Math.min(end, this.state.sizeBytes);
      const old = new Uint8Array(Math.max(0, oldEnd - position));
      if (old.length > 0) await this.inner.read(old, position);
      if (end > this.state.sizeBytes) {
        this.state.undo.push({ kind: 'size', size: this.state.sizeBytes, tail: new Uint8Array(0) });
        this.state.sizeBytes = end;
      }
      this.state.undo.push({ kind: 'write', offset: position, old, length: land, tearAt: tear });
      await this.inner.write(data.subarray(0, land), position);
      this.fs.recordWrite(this.path, position, land);
    }
    if (error !== null) throw error;
  }

  async read(into: Uint8Array, position: number): Promise<number> {
    this.fs.checkAlive('read', this.path, this.epoch);
    return this.inner.read(into, position);
  }

  async datasync(): Promise<void> {
    this.fs.checkAlive('fdatasync', this.path, this.epoch);
    this.fs.maybeFailSync(this.path);
    await this.inner.datasync();
    this.fs.syncCount++;
    this.state.undo.length = 0;
  }

  async sync(): Promise<void> {
    this.fs.checkAlive('fsync', this.path, this.epoch);
    this.fs.maybeFailSync(this.path);
    await this.inner.sync();
    this.state.undo.length = 0;
  }

  async truncate(sizeBytes: number): Promise<void> {
    this.fs.checkAlive('ftruncate', this.path, this.epoch);
    const tail = new Uint8Array(Math.max(0, this.state.sizeBytes - sizeBytes));
    if (tail.length > 0) await this.inner.read(tail, sizeBytes);
    this.state.undo.push({ kind: 'size', size: this.state.sizeBytes, tail });
    await this.inner.truncate(sizeBytes);
    this.state.sizeBytes = sizeBytes;
  }

  /** Zero writes through this layer, so they count toward crash points and can fail. */
  async allocate(sizeBytes: number): Promise<void> {
    const zeros = new Uint8Array(PREALLOCATE_CHUNK_BYTES);
    let position = await this.size();
    while (position < sizeBytes) {
      const n = Math.min(zeros.length, sizeBytes - position);
      await this.write(zeros.subarray(0, n), position);
      position += n;
    }
  }

  async size(): Promise<number> {
    this.fs.checkAlive('fstat', this.path, this.epoch);
    return this.inner.size();
  }

  async close(): Promise<void> {
    this.fs.forget(this.inner);
    if (this.epoch !== this.fs.currentEpoch) return;
    await this.inner.close();
  }
}
