/**
 * A read-only look at a WAL directory: every verified record of every segment, in order, with
 * its file and, for entry and hard-state records, what it holds. For tests, chaos tooling and
 * diagnostics — never for recovery (wal.ts "open" is the only reader that decides anything).
 * Synchronous (it reads each segment whole); safe on a live member's directory
 * (records being appended are simply not complete yet).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Entry, HardState } from '../../raft/types.js';
import { decodeEntry, decodeHardState, parseSegmentName, RecordType } from './format.js';
import { scanSegment, type VerifiedRecord } from './scan.js';

export interface InspectedRecord extends VerifiedRecord {
  /** The segment file's path. */
  readonly file: string;
  /** The entry of an entry record, else null. */
  readonly entry: Entry | null;
  /** The hard state of a hard-state record, else null. */
  readonly hardState: HardState | null;
}

/** Every verified record of the WAL in `dir`, segment by segment, in order. */
export function inspectWal(dir: string): InspectedRecord[] {
  const out: InspectedRecord[] = [];
  const segments = readdirSync(dir)
    .map((name) => ({ name, parsed: parseSegmentName(name) }))
    .filter((s) => s.parsed !== null)
    .sort((a, b) => a.parsed!.seq - b.parsed!.seq);
  for (const { name, parsed } of segments) {
    const file = join(dir, name);
    const bytes = new Uint8Array(readFileSync(file));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    scanSegment([{ bytes, view }], parsed!.seq, (batch) => {
      for (const r of batch) {
        const entry =
          r.type === RecordType.Entry
            ? decodeEntry(bytes, view, r.payloadAt, r.payloadBytes)
            : null;
        const hardState =
          r.type === RecordType.HardState
            ? decodeHardState(view, r.payloadAt, r.payloadBytes)
            : null;
        out.push({ ...r, file, entry, hardState });
      }
    });
  }
  return out;
}
