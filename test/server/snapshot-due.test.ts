/**
 * When a member snapshots (Member.snapshotEveryEntriesMax, snapshotDue): every
 * snapshotEveryEntries entries by default; with the log-bytes rule on, a large image waits until
 * the log since the last snapshot outgrows it (4×), or snapshotEveryEntriesMax entries; a small
 * image (below 1 MiB) does not wait.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { Snapshot } from '../../src/raft/types.js';
import {
  Member,
  SNAPSHOT_DEFER_IMAGE_BYTES_MIN,
  SNAPSHOT_LOG_BYTES_MAX,
  SNAPSHOT_LOG_BYTES_PER_IMAGE_BYTE,
  snapshotDue,
} from '../../src/server/member.js';
import { Prng } from '../../src/util/prng.js';
import {
  ListStateMachine,
  LoopbackHub,
  ManualClock,
  proposeText,
  VirtualPersistence,
} from './harness.js';

test('snapshotDue: never before everyEntries; then a small image, the log outgrowing a large one, the entry cap or the byte cap', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.integer({ min: 0, max: 2 * SNAPSHOT_LOG_BYTES_MAX }),
      fc.integer({ min: 0, max: 2 * SNAPSHOT_LOG_BYTES_MAX }),
      fc.integer({ min: 1, max: 100_000 }),
      fc.integer({ min: 0, max: 900_000 }),
      (entries, logBytes, imageBytes, every, extra) => {
        const max = every + extra;
        const due = snapshotDue(entries, logBytes, imageBytes, every, max);
        if (entries < every) return !due;
        if (entries >= max || imageBytes < SNAPSHOT_DEFER_IMAGE_BYTES_MIN) return due;
        const byBytes =
          logBytes >= SNAPSHOT_LOG_BYTES_PER_IMAGE_BYTE * imageBytes ||
          logBytes >= SNAPSHOT_LOG_BYTES_MAX;
        return due === byBytes;
      },
    ),
  );
  // With max = every (the default), exactly the old rule: every `every` entries.
  assert.equal(snapshotDue(9, 0, 1e9, 10, 10), false);
  assert.equal(snapshotDue(10, 0, 1e9, 10, 10), true);
});

/** A one-voter member whose snapshots are images of `imageBytes` bytes. */
function singleMember(every: number, max: number | undefined, imageBytes: number) {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const storage = new MemoryStorage();
  RawNode.bootstrap(storage, [1]);
  const sm = new ListStateMachine();
  sm.applied = 1;
  sm.snapshot = () => new Uint8Array(imageBytes);
  const snapshotsAt: number[] = [];
  const persistence = new VirtualPersistence(clock);
  const save = persistence.saveSnapshot.bind(persistence);
  persistence.saveSnapshot = (snap: Snapshot, done) => {
    snapshotsAt.push(snap.metadata.index);
    save(snap, done);
  };
  const member = new Member({
    id: 1,
    clock,
    network: hub.network(1),
    persistence,
    storage,
    stateMachine: sm,
    random: new Prng(7),
    timing: { tickMs: 10, electionTicks: 10, heartbeatTicks: 1, requestTimeoutMs: 2000 },
    snapshotEveryEntries: every,
    ...(max === undefined ? {} : { snapshotEveryEntriesMax: max }),
    compactionKeepEntries: 5,
  });
  member.start();
  clock.advance(500); // elected
  assert.ok(member.isLeader, 'the single voter leads');
  return { clock, member, snapshotsAt };
}

/** Proposes `count` commands of `bytes` bytes one at a time, each applied before the next. */
function proposeMany(s: ReturnType<typeof singleMember>, count: number, bytes: number): void {
  for (let i = 0; i < count; i++) {
    void proposeText(s.member, `${i}:`.padEnd(bytes, 'x')).catch(() => {});
    s.clock.advance(5);
  }
  s.clock.advance(100);
}

function gaps(indexes: readonly number[]): number[] {
  return indexes.slice(1).map((at, i) => at - indexes[i]!);
}

const MiB = 1024 * 1024;

test('by default a member snapshots every snapshotEveryEntries entries, whatever its image', () => {
  const s = singleMember(10, undefined, 2 * MiB);
  proposeMany(s, 100, 40);
  assert.ok(s.snapshotsAt.length >= 8, `snapshots at ${s.snapshotsAt.join(', ')}`);
  for (const gap of gaps(s.snapshotsAt)) assert.ok(gap >= 10 && gap <= 11, `gap ${gap}`);
});

test('with the log-bytes rule, a small image still snapshots every snapshotEveryEntries entries', () => {
  const s = singleMember(10, 1000, SNAPSHOT_DEFER_IMAGE_BYTES_MIN - 1);
  proposeMany(s, 100, 40);
  assert.ok(s.snapshotsAt.length >= 8, `snapshots at ${s.snapshotsAt.join(', ')}`);
  for (const gap of gaps(s.snapshotsAt)) assert.ok(gap >= 10 && gap <= 11, `gap ${gap}`);
});

test('with the log-bytes rule, a large image the log never outgrows waits for snapshotEveryEntriesMax', () => {
  const s = singleMember(10, 50, 2 * MiB);
  proposeMany(s, 200, 40);
  assert.ok(s.snapshotsAt.length >= 3, `snapshots at ${s.snapshotsAt.join(', ')}`);
  for (const gap of gaps(s.snapshotsAt)) assert.ok(gap >= 50 && gap <= 51, `gap ${gap}`);
});

test('with the log-bytes rule, a large image waits until the log since it outgrows it', () => {
  // 2 MiB images, commands of 64 KiB (plus the envelope): due after 4 × 2 MiB of log, 128
  // entries, well before the cap of 1000 and past snapshotEveryEntries (10).
  const s = singleMember(10, 1000, 2 * MiB);
  proposeMany(s, 400, 64 * 1024);
  assert.ok(s.snapshotsAt.length >= 3, `snapshots at ${s.snapshotsAt.join(', ')}`);
  // The first comes at 10: the bootstrap image was empty.
  for (const gap of gaps(s.snapshotsAt)) assert.ok(gap >= 127 && gap <= 129, `gap ${gap}`);
});
