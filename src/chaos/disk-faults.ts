/**
 * Media corruption for `tandem chaos` (fault kind `bitflip`): one bit of a stopped member's WAL
 * flipped on disk through the storage fault layer (`FaultyFileSystem.flipBit`, the same
 * operation the simulator uses), then the member restarted on it.
 *
 * Where: inside the payload of a record of a batch that is NOT the segment's last, so a valid
 * record follows the damage. That is what makes it corruption rather than a torn tail (storage/
 * wal/wal.ts "open"): a flip in the last batch reads exactly like a crash during its write and
 * is cut as a torn tail, which is only honest for a batch never acknowledged — a bit flip there
 * is a known blind spot of any per-record checksum without a second copy, not a fault we can
 * expect a member to detect. Then:
 * - with `wal.mirror`, recovery must repair the record from the mirror and start (the runner
 *   checks the flipped byte is back);
 * - without, the member must fetch the lost committed entries from its peers (or prove the damage
 *   harmless) and start, or refuse to start (WAL_CORRUPT naming file, offset and why).
 */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FaultyFileSystem } from '../storage/fault-fs.js';
import { NodeFileSystem } from '../storage/index.js';
import { parseSegmentName } from '../storage/wal/format.js';
import { type SegmentImage, scanSegment, type VerifiedRecord } from '../storage/wal/scan.js';
import type { Prng } from '../util/prng.js';

/** Segments looked at, newest first, for one with a batch to damage. */
const SEGMENTS_SCANNED_MAX = 8;

export interface BitFlip {
  readonly file: string;
  readonly offset: number;
  readonly bit: number;
  /** The byte before the flip (a repaired copy has it again). */
  readonly before: number;
}

/** The member's WAL directory (storage/raft-persistence.ts). */
export function walDir(dataDir: string): string {
  return join(dataDir, 'wal');
}

/**
 * Flips one bit in a record followed by a valid one, in the newest segment that has one.
 * Null when no segment has two complete batches yet (too early in the run).
 */
export async function flipWalBit(dataDir: string, random: Prng): Promise<BitFlip | null> {
  const dir = walDir(dataDir);
  const segments = readdirSync(dir)
    .map((name) => ({ name, parsed: parseSegmentName(name) }))
    .filter((s) => s.parsed !== null)
    .sort((a, b) => b.parsed!.seq - a.parsed!.seq)
    .slice(0, SEGMENTS_SCANNED_MAX);
  for (const segment of segments) {
    const file = join(dir, segment.name);
    const bytes = new Uint8Array(await readFile(file));
    const image: SegmentImage = {
      bytes,
      view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    };
    const batches: VerifiedRecord[][] = [];
    scanSegment([image], segment.parsed!.seq, (batch) => batches.push([...batch]));
    // Every batch but the last: a valid record follows whatever is damaged.
    const records = batches
      .slice(0, -1)
      .flat()
      .filter((r) => r.payloadBytes > 0);
    if (records.length === 0) continue;
    const record = records[random.int(records.length)]!;
    const offset = record.payloadAt + random.int(record.payloadBytes);
    const bit = random.int(8);
    const before = bytes[offset]!;
    await new FaultyFileSystem(new NodeFileSystem()).flipBit(file, offset, bit);
    return { file, offset, bit, before };
  }
  return null;
}

/** The byte at the flip's offset now (after a repair it equals `before`); null if gone. */
export async function byteAt(flip: BitFlip): Promise<number | null> {
  const bytes = await readFile(flip.file).catch(() => null);
  return bytes === null || flip.offset >= bytes.length ? null : bytes[flip.offset]!;
}
