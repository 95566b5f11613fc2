/**
 * Writes a whole bbolt database file (format.ts), streamed page by page, never holding the file
 * in memory. Each bucket's entries are read twice: once to plan the tree (which leaf holds which
 * entries: only each leaf's first key is kept), once to write the leaves. Page ids follow file
 * order, so the file is written front to back:
 *
 *   0, 1  meta (txid 0 and 1, the same tree)      2  freelist (empty)
 *   then each non-empty bucket: its branch pages, root first, then its leaves in key order
 *   then the root bucket (the list of buckets): its branch pages, then its leaves
 *
 * Every page below the high water mark is reachable, so bbolt's `tx.Check()` (which
 * `etcdctl snapshot status` runs) finds nothing unreachable or doubly referenced. Nodes are
 * filled to the page; a single entry larger than a page gets a node of its own with overflow
 * pages. Empty buckets are written inline, as bbolt writes a new bucket.
 */
import { assert } from '../../util/assert.js';
import { compareBytes } from '../../util/bytes.js';
import { StorageError } from '../errors.js';
import {
  BRANCH_ELEMENT_BYTES,
  BUCKET_HEADER_BYTES,
  KEY_BYTES_MAX,
  LEAF_ELEMENT_BYTES,
  LEAF_FLAG_BUCKET,
  META_BYTES,
  PAGE_HEADER_BYTES,
  PAGE_SIZE_DEFAULT,
  PAGE_SIZE_MAX,
  PAGE_SIZE_MIN,
  PageFlag,
  pagesFor,
  TREE_DEPTH_MAX,
  VALUE_BYTES_MAX,
  writeMeta,
  writePageHeader,
} from './format.js';

export type BboltEntry = readonly [key: Uint8Array, value: Uint8Array];

export interface BboltBucketSource {
  readonly name: Uint8Array;
  /**
   * The bucket's entries in ascending byte order of key, no key twice. Called twice; both
   * iterations must give the same entries (a pinned read view does).
   */
  entries(): Iterable<BboltEntry>;
}

export interface BboltWriteOptions {
  readonly pageSize?: number;
  /** Pages are handed out in chunks of about this many bytes (a large node alone may exceed it). */
  readonly chunkBytesTarget?: number;
  /** Planning yields an empty chunk every this many entries, so a consumer can pause there. */
  readonly entriesPerPause?: number;
}

const CHUNK_BYTES_TARGET_DEFAULT = 128 * 1024;
const ENTRIES_PER_PAUSE_DEFAULT = 4096;
const EMPTY = new Uint8Array(0);
/** A page's element count is a u16. */
const PAGE_ELEMENTS_MAX = 0xffff;

/** One planned node: its first key, how many elements, its size and where it goes. */
interface NodePlan {
  readonly firstKey: Uint8Array;
  readonly count: number;
  readonly bytes: number;
  id: number;
}

/** A bucket's (or the root's) tree: levels[0] = leaves, the last level = the root alone. */
interface TreePlan {
  readonly levels: NodePlan[][];
  rootId: number;
}

/**
 * Groups elements into nodes greedily, as many as fit a page (or one, if it alone is larger).
 * The same packer runs in the planning pass and the writing pass, so both cut at the same keys.
 */
class NodePacker {
  private count = 0;
  private bytes = PAGE_HEADER_BYTES;
  private firstKey: Uint8Array | null = null;
  constructor(private readonly pageSize: number) {}

  /** Adds an element; returns the node it closed, if it started a new one. */
  add(key: Uint8Array, elementBytes: number): NodePlan | null {
    let closed: NodePlan | null = null;
    if (
      this.count > 0 &&
      (this.bytes + elementBytes > this.pageSize || this.count === PAGE_ELEMENTS_MAX)
    ) {
      closed = this.close();
    }
    if (this.count === 0) this.firstKey = key;
    this.count++;
    this.bytes += elementBytes;
    return closed;
  }

  /** The open node, if any, closed. */
  close(): NodePlan | null {
    if (this.count === 0) return null;
    assert(this.firstKey !== null, 'an open node has a first key');
    const node: NodePlan = { firstKey: this.firstKey, count: this.count, bytes: this.bytes, id: 0 };
    this.count = 0;
    this.bytes = PAGE_HEADER_BYTES;
    this.firstKey = null;
    return node;
  }
}

function leafElementBytes(key: Uint8Array, value: Uint8Array): number {
  return LEAF_ELEMENT_BYTES + key.length + value.length;
}

function checkEntry(bucket: string, key: Uint8Array, value: Uint8Array, prev: Uint8Array | null) {
  if (key.length === 0 || key.length > KEY_BYTES_MAX) {
    throw new StorageError('INVALID_CONFIG', `bucket ${bucket}: key of ${key.length} bytes`);
  }
  if (value.length > VALUE_BYTES_MAX) {
    throw new StorageError('INVALID_CONFIG', `bucket ${bucket}: value of ${value.length} bytes`);
  }
  if (prev !== null && compareBytes(prev, key) >= 0) {
    throw new StorageError('INVALID_CONFIG', `bucket ${bucket}: keys not strictly ascending`);
  }
}

/** The branch levels above `leaves`, up to a single root. */
function planLevels(leaves: NodePlan[], pageSize: number): NodePlan[][] {
  const levels = [leaves];
  while (levels[levels.length - 1]!.length > 1) {
    assert(levels.length < TREE_DEPTH_MAX, 'tree depth bounded');
    const packer = new NodePacker(pageSize);
    const above: NodePlan[] = [];
    for (const child of levels[levels.length - 1]!) {
      const closed = packer.add(child.firstKey, BRANCH_ELEMENT_BYTES + child.firstKey.length);
      if (closed !== null) above.push(closed);
    }
    const last = packer.close();
    if (last !== null) above.push(last);
    levels.push(above);
  }
  return levels;
}

/** Page ids for a tree from `firstId`, root level first; returns the next free id. */
function assignIds(tree: TreePlan, firstId: number, pageSize: number): number {
  let next = firstId;
  for (let level = tree.levels.length - 1; level >= 0; level--) {
    for (const node of tree.levels[level]!) {
      node.id = next;
      next += pagesFor(node.bytes, pageSize);
    }
  }
  tree.rootId = tree.levels[tree.levels.length - 1]![0]!.id;
  return next;
}

/**
 * A bbolt file holding `buckets` (top-level, no nested buckets), as a lazily produced sequence
 * of byte chunks. Empty chunks may appear while planning (pause points). `sizeBytes` is known
 * once the first non-empty chunk has been produced.
 */
export class BboltFileWriter {
  private readonly pageSize: number;
  private readonly chunkBytesTarget: number;
  private readonly entriesPerPause: number;
  private readonly buckets: readonly BboltBucketSource[];
  private pageCount: number | null = null;

  constructor(buckets: readonly BboltBucketSource[], options: BboltWriteOptions = {}) {
    this.pageSize = options.pageSize ?? PAGE_SIZE_DEFAULT;
    this.chunkBytesTarget = options.chunkBytesTarget ?? CHUNK_BYTES_TARGET_DEFAULT;
    this.entriesPerPause = options.entriesPerPause ?? ENTRIES_PER_PAUSE_DEFAULT;
    assert(
      this.pageSize >= PAGE_SIZE_MIN &&
        this.pageSize <= PAGE_SIZE_MAX &&
        (this.pageSize & (this.pageSize - 1)) === 0,
      'page size a power of two within bounds',
    );
    assert(this.chunkBytesTarget > 0 && this.entriesPerPause > 0, 'positive chunking');
    const sorted = [...buckets].sort((a, b) => compareBytes(a.name, b.name));
    for (let i = 0; i < sorted.length; i++) {
      checkEntry('(root)', sorted[i]!.name, EMPTY, i === 0 ? null : sorted[i - 1]!.name);
    }
    this.buckets = sorted;
  }

  /** The file's size once planned (null before). */
  get sizeBytes(): number | null {
    return this.pageCount === null ? null : this.pageCount * this.pageSize;
  }

  *chunks(): Generator<Uint8Array, void, undefined> {
    // Pass 1: plan every bucket's tree.
    const trees: (TreePlan | null)[] = [];
    for (const bucket of this.buckets) {
      const leaves: NodePlan[] = [];
      const packer = new NodePacker(this.pageSize);
      let prev: Uint8Array | null = null;
      let seen = 0;
      for (const [key, value] of bucket.entries()) {
        checkEntry(new TextDecoder().decode(bucket.name), key, value, prev);
        prev = key;
        const closed = packer.add(key, leafElementBytes(key, value));
        if (closed !== null) leaves.push(closed);
        if (++seen % this.entriesPerPause === 0) yield EMPTY;
      }
      const last = packer.close();
      if (last !== null) leaves.push(last);
      trees.push(
        leaves.length === 0 ? null : { levels: planLevels(leaves, this.pageSize), rootId: 0 },
      );
    }
    // Ids: metas, freelist, then the buckets' trees, then the root bucket's.
    let next = 3;
    for (const tree of trees) if (tree !== null) next = assignIds(tree, next, this.pageSize);
    const rootEntries = this.buckets.map(
      (b, i): BboltEntry => [b.name, this.bucketValue(trees[i]!)],
    );
    const rootLeaves: NodePlan[] = [];
    const rootPacker = new NodePacker(this.pageSize);
    for (const [key, value] of rootEntries) {
      const closed = rootPacker.add(key, leafElementBytes(key, value));
      if (closed !== null) rootLeaves.push(closed);
    }
    const rootLast = rootPacker.close();
    if (rootLast !== null) rootLeaves.push(rootLast);
    if (rootLeaves.length === 0)
      rootLeaves.push({ firstKey: EMPTY, count: 0, bytes: PAGE_HEADER_BYTES, id: 0 });
    const rootTree: TreePlan = { levels: planLevels(rootLeaves, this.pageSize), rootId: 0 };
    next = assignIds(rootTree, next, this.pageSize);
    this.pageCount = next;

    // Pass 2: write, in page id order.
    const out = new ChunkBuffer(this.chunkBytesTarget);
    yield* out.push(this.metaAndFreelistPages(rootTree.rootId));
    for (let i = 0; i < this.buckets.length; i++) {
      const tree = trees[i]!;
      if (tree === null) continue;
      yield* this.writeTree(tree, this.buckets[i]!.entries(), 0, out);
    }
    // The root bucket's values were fixed when the ids were: re-made here the same.
    const rootAgain = this.buckets.map((b, i): BboltEntry => [b.name, this.bucketValue(trees[i]!)]);
    yield* this.writeTree(rootTree, rootAgain, LEAF_FLAG_BUCKET, out);
    yield* out.flush();
  }

  /** A bucket's value in its parent: the header, plus an empty inline leaf for an empty one. */
  private bucketValue(tree: TreePlan | null): Uint8Array {
    if (tree === null) {
      const value = new Uint8Array(BUCKET_HEADER_BYTES + PAGE_HEADER_BYTES);
      writePageHeader(value, BUCKET_HEADER_BYTES, 0, PageFlag.Leaf, 0, 0);
      return value;
    }
    const value = new Uint8Array(BUCKET_HEADER_BYTES);
    new DataView(value.buffer).setBigUint64(0, BigInt(tree.rootId), true);
    return value;
  }

  private metaAndFreelistPages(rootPgid: number): Uint8Array {
    assert(this.pageCount !== null, 'planned');
    const pages = new Uint8Array(3 * this.pageSize);
    for (const txid of [0, 1]) {
      const at = txid * this.pageSize;
      writePageHeader(pages, at, txid, PageFlag.Meta, 0, 0);
      writeMeta(pages, at + PAGE_HEADER_BYTES, {
        pageSize: this.pageSize,
        flags: 0,
        rootPgid,
        rootSequence: 0n,
        freelistPgid: 2n,
        pgid: this.pageCount,
        txid: BigInt(txid),
      });
    }
    assert(PAGE_HEADER_BYTES + META_BYTES <= this.pageSize, 'meta fits a page');
    writePageHeader(pages, 2 * this.pageSize, 2, PageFlag.Freelist, 0, 0);
    return pages;
  }

  /** Branch pages (root first), then leaves from `entries`, checked against the plan. */
  private *writeTree(
    tree: TreePlan,
    entries: Iterable<BboltEntry>,
    leafFlags: number,
    out: ChunkBuffer,
  ): Generator<Uint8Array, void, undefined> {
    for (let level = tree.levels.length - 1; level >= 1; level--) {
      let child = 0;
      const below = tree.levels[level - 1]!;
      for (const node of tree.levels[level]!) {
        yield* out.push(this.branchPage(node, below.slice(child, child + node.count)));
        child += node.count;
      }
      assert(child === below.length, 'every child under one branch');
    }
    const leaves = tree.levels[0]!;
    const packer = new NodePacker(this.pageSize);
    let pending: BboltEntry[] = [];
    let leaf = 0;
    const emit = (closed: NodePlan): Uint8Array => {
      const planned = leaves[leaf++];
      if (
        planned === undefined ||
        planned.count !== closed.count ||
        planned.bytes !== closed.bytes ||
        compareBytes(planned.firstKey, closed.firstKey) !== 0
      ) {
        throw new StorageError('IO', 'a bucket changed between the two passes of a bbolt write');
      }
      return this.leafPage(planned, pending.slice(0, closed.count), leafFlags);
    };
    for (const entry of entries) {
      const closed = packer.add(entry[0], leafElementBytes(entry[0], entry[1]));
      if (closed !== null) {
        yield* out.push(emit(closed));
        pending = pending.slice(closed.count);
      }
      pending.push(entry);
    }
    const last = packer.close();
    if (last !== null) yield* out.push(emit(last));
    else if (leaves.length === 1 && leaves[0]!.count === 0) {
      yield* out.push(this.leafPage(leaves[leaf++]!, [], leafFlags));
    }
    if (leaf !== leaves.length) {
      throw new StorageError('IO', 'a bucket changed between the two passes of a bbolt write');
    }
  }

  private branchPage(node: NodePlan, children: readonly NodePlan[]): Uint8Array {
    const pages = pagesFor(node.bytes, this.pageSize);
    const page = new Uint8Array(pages * this.pageSize);
    writePageHeader(page, 0, node.id, PageFlag.Branch, children.length, pages - 1);
    const view = new DataView(page.buffer);
    let data = PAGE_HEADER_BYTES + children.length * BRANCH_ELEMENT_BYTES;
    children.forEach((child, i) => {
      const at = PAGE_HEADER_BYTES + i * BRANCH_ELEMENT_BYTES;
      view.setUint32(at, data - at, true);
      view.setUint32(at + 4, child.firstKey.length, true);
      view.setBigUint64(at + 8, BigInt(child.id), true);
      page.set(child.firstKey, data);
      data += child.firstKey.length;
    });
    assert(data === node.bytes, 'branch page filled as planned');
    return page;
  }

  private leafPage(node: NodePlan, entries: readonly BboltEntry[], flags: number): Uint8Array {
    const pages = pagesFor(node.bytes, this.pageSize);
    const page = new Uint8Array(pages * this.pageSize);
    writePageHeader(page, 0, node.id, PageFlag.Leaf, entries.length, pages - 1);
    const view = new DataView(page.buffer);
    let data = PAGE_HEADER_BYTES + entries.length * LEAF_ELEMENT_BYTES;
    entries.forEach(([key, value], i) => {
      const at = PAGE_HEADER_BYTES + i * LEAF_ELEMENT_BYTES;
      view.setUint32(at, flags, true);
      view.setUint32(at + 4, data - at, true);
      view.setUint32(at + 8, key.length, true);
      view.setUint32(at + 12, value.length, true);
      page.set(key, data);
      page.set(value, data + key.length);
      data += key.length + value.length;
    });
    assert(data === node.bytes, 'leaf page filled as planned');
    return page;
  }
}

/** Collects pages into chunks of about `target` bytes. */
class ChunkBuffer {
  private parts: Uint8Array[] = [];
  private bytes = 0;
  constructor(private readonly target: number) {}

  *push(page: Uint8Array): Generator<Uint8Array, void, undefined> {
    this.parts.push(page);
    this.bytes += page.length;
    if (this.bytes >= this.target) yield* this.flush();
  }

  *flush(): Generator<Uint8Array, void, undefined> {
    if (this.bytes === 0) return;
    const out = this.parts.length === 1 ? this.parts[0]! : new Uint8Array(this.bytes);
    if (this.parts.length > 1) {
      let at = 0;
      for (const p of this.parts) {
        out.set(p, at);
        at += p.length;
      }
    }
    this.parts = [];
    this.bytes = 0;
    yield out;
  }
}
