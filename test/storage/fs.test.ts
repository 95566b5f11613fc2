import assert from 'node:assert/strict';
import {
  constants,
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeFileAtomic } from '../../src/storage/atomic.js';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import { NodeFileSystem } from '../../src/storage/fs.js';
import { Prng } from '../../src/util/prng.js';
import { tempDir } from './helpers.js';

const real = new NodeFileSystem();
const bytes = (s: string) => new TextEncoder().encode(s);

test('NodeFileSystem: write at offsets, read, allocate with zeros, truncate, stat, readdir', async () => {
  const dir = tempDir();
  const path = join(dir, 'f');
  const h = await real.open(path, 'create');
  await h.allocate(4096);
  assert.equal(await h.size(), 4096);
  await h.write(bytes('hello'), 100);
  await h.datasync();
  const back = new Uint8Array(7);
  assert.equal(await h.read(back, 99), 7);
  assert.deepEqual([...back], [0, ...bytes('hello'), 0]);
  await h.truncate(102);
  await h.sync();
  assert.equal(await h.read(new Uint8Array(10), 100), 2);
  await h.close();
  assert.deepEqual(await real.stat(path), { sizeBytes: 102, isDirectory: false });
  assert.equal(await real.stat(join(dir, 'nope')), null);
  await real.syncDir(dir);
  assert.deepEqual(await real.readdir(dir), ['f']);
  await assert.rejects(real.open(join(dir, 'nope'), 'write'), /ENOENT/);
});

test('fault fs: a power loss drops unsynced writes and keeps synced ones', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const path = join(dir, 'f');
  writeFileSync(path, 'AAAAAAAA');
  const h = await fs.open(path, 'write');
  await h.write(bytes('BB'), 0);
  await h.datasync();
  await h.write(bytes('CC'), 4);
  await h.write(bytes('DDDD'), 8); // extends the file
  await fs.restart({ powerLoss: true });
  assert.equal(readFileSync(path, 'utf8'), 'BBAAAAAA');
  await assert.rejects(h.write(bytes('x'), 0), /ECRASHED/, 'handles die with the process');
});

test('fault fs: writeDurable (O_DSYNC) keeps its own bytes across a power loss, not the unsynced writes around them', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const path = join(dir, 'f');
  writeFileSync(path, 'AAAAAAAA');
  const plain = await fs.open(path, 'write');
  assert.equal(plain.writeDurable, undefined, 'only with durableWrites');
  await plain.close();
  const h = await fs.open(path, 'write', { durableWrites: true });
  assert.ok(h.writeDurable !== undefined);
  await h.write(bytes('BBBB'), 0); // unsynced
  await h.writeDurable(bytes('CCCC'), 2); // overlaps the unsynced write's end
  await h.writeDurable(bytes('DD'), 10); // extends the file past a hole
  await h.write(bytes('EE'), 6); // unsynced, after them
  await fs.restart({ powerLoss: true });
  assert.equal(readFileSync(path, 'latin1'), 'AACCCCAA\0\0DD');
});

test('fault fs: a process crash keeps unsynced writes; crashAfterBytes lands a prefix', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const path = join(dir, 'f');
  const h = await fs.open(path, 'create');
  await h.write(bytes('0123'), 0);
  fs.crashAfterBytes(3);
  await assert.rejects(h.write(bytes('456789'), 4), /ECRASHED/);
  assert.ok(fs.isCrashed);
  await assert.rejects(fs.readdir(dir), /ECRASHED/);
  await fs.restart({ powerLoss: false });
  assert.equal(readFileSync(path, 'utf8'), '0123456');
});

test('fault fs: tearNextWrite keeps only a prefix of that write across a power loss', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const path = join(dir, 'f');
  writeFileSync(path, '........');
  const h = await fs.open(path, 'write');
  await h.write(bytes('ab'), 0);
  fs.tearNextWrite(2);
  await h.write(bytes('WXYZ'), 2);
  await h.write(bytes('!!'), 6); // after the torn write: lost
  await fs.restart({ powerLoss: true });
  assert.equal(readFileSync(path, 'utf8'), 'abWX....');
});

test("fault fs: random partial power loss keeps a prefix of each file's unsynced writes", async () => {
  const rng = new Prng(5);
  const seen = new Set<string>();
  for (let i = 0; i < 60; i++) {
    const dir = tempDir();
    const fs = new FaultyFileSystem(real);
    const path = join(dir, 'f');
    writeFileSync(path, '000000');
    const h = await fs.open(path, 'write');
    for (let j = 0; j < 3; j++) await h.write(bytes(`${j + 1}${j + 1}`), j * 2);
    await fs.restart({ powerLoss: true, rng });
    const text = readFileSync(path, 'utf8');
    assert.match(text, /^(1?|11(2?|22(3?|33)))0*$/, text);
    assert.equal(text.length, 6);
    seen.add(text);
  }
  assert.ok(seen.size >= 5, `outcomes: ${[...seen].join(' ')}`);
});

test('fault fs: ENOSPC / EIO on demand, only for matching paths; a failed write may land a prefix', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const a = await fs.open(join(dir, 'a'), 'create');
  const b = await fs.open(join(dir, 'mirror-b'), 'create');
  fs.failNextWrite('ENOSPC', 2, 'mirror');
  await a.write(bytes('aaaa'), 0);
  await assert.rejects(
    b.write(bytes('bbbb'), 0),
    (e: NodeJS.ErrnoException) => e.code === 'ENOSPC',
  );
  assert.equal(readFileSync(join(dir, 'mirror-b'), 'utf8'), 'bb');
  fs.failNextSync('EIO');
  await assert.rejects(a.datasync(), (e: NodeJS.ErrnoException) => e.code === 'EIO');
  await a.datasync();
  await a.close();
  await b.close();
});

test('fault fs: creates and renames not followed by a directory sync are undone by a power loss', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  writeFileSync(join(dir, 'final'), 'old');
  // Atomic replace done right survives.
  await writeFileAtomic(fs, dir, 'final', bytes('new'));
  await fs.restart({ powerLoss: true });
  assert.equal(readFileSync(join(dir, 'final'), 'utf8'), 'new');
  // Without the directory fsync, the rename and the create are lost; the old file comes back.
  const h = await fs.open(join(dir, 'tmp'), 'create');
  await h.write(bytes('newer'), 0);
  await h.sync();
  await h.close();
  await fs.rename(join(dir, 'tmp'), join(dir, 'final'));
  await fs.restart({ powerLoss: true });
  assert.equal(readFileSync(join(dir, 'final'), 'utf8'), 'new');
  assert.equal(existsSync(join(dir, 'tmp')), false);
  // Without the file fsync, the renamed file would be empty after the crash.
  const g = await fs.open(join(dir, 'tmp2'), 'create');
  await g.write(bytes('data'), 0);
  await g.close();
  await fs.rename(join(dir, 'tmp2'), join(dir, 'other'));
  await fs.syncDir(dir);
  await fs.restart({ powerLoss: true });
  assert.equal(readFileSync(join(dir, 'other'), 'utf8'), '', 'the name survived, the data did not');
});

test('fault fs: flipBit changes exactly one bit', async () => {
  const dir = tempDir();
  const path = join(dir, 'f');
  writeFileSync(path, Buffer.from([0, 0, 0]));
  await new FaultyFileSystem(real).flipBit(path, 1, 7);
  assert.deepEqual([...readFileSync(path)], [0, 128, 0]);
});

/** Open flags (octal, as /proc prints them) of this process's descriptors for `path`. */
function openFlagsOf(path: string): number[] {
  const flags: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (readdir's own descriptor)
    }
    if (target !== path) continue;
    const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    flags.push(Number.parseInt(/^flags:\s*([0-7]+)/m.exec(info)![1]!, 8));
  }
  return flags;
}

test('NodeFileSystem durableWrites: a second descriptor with O_DSYNC, bound to the file across a rename, closed with the handle', async (t) => {
  if (!existsSync('/proc/self/fdinfo')) {
    t.skip('needs /proc (Linux) to read descriptor flags');
    return;
  }
  const dir = tempDir();
  const tmp = join(dir, 'seg.tmp');
  const path = join(dir, 'seg');
  const h = await real.open(tmp, 'create', { durableWrites: true });
  assert.ok(h.writeDurable !== undefined, 'writeDurable offered');
  await h.allocate(4096);
  // The WAL renames a segment into place after opening it: writes must follow the file.
  renameSync(tmp, path);
  await h.writeDurable(bytes('durable'), 64);
  const back = new Uint8Array(7);
  assert.equal(await h.read(back, 64), 7);
  assert.deepEqual([...back], [...bytes('durable')]);
  assert.equal(readFileSync(path).subarray(64, 71).toString(), 'durable');
  const flags = openFlagsOf(path);
  assert.equal(flags.length, 2, 'the handle and its O_DSYNC twin');
  assert.equal(flags.filter((f) => (f & constants.O_DSYNC) !== 0).length, 1, 'one has O_DSYNC');
  await h.close();
  assert.deepEqual(openFlagsOf(path), [], 'both closed');
  // Without the option (and for reading) there is no such descriptor and no writeDurable.
  const plain = await real.open(path, 'write');
  assert.equal(plain.writeDurable, undefined);
  assert.equal(openFlagsOf(path).length, 1);
  await plain.close();
  const reader = await real.open(path, 'read', { durableWrites: true });
  assert.equal(reader.writeDurable, undefined);
  await reader.close();
});
