/**
 * Rule 4 across leaders: a warm standby's refresh recorded in the registry (wall-clock time,
 * record-refresh) schedules the next one, so a new leader with no refresh of its own does not
 * refresh every warm standby at its first round.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { lastRefreshMs, planRedundancy, planSnapshotRefresh } from '../../src/cluster/policy.js';
import { POLICY, standby, summary, view, voter } from './fixture.js';

const EVERY_MS = 60_000;
/** Wall clock when the old leader recorded the refresh (ms since the epoch). */
const RECORDED_WALL_MS = 1_700_000_000_000;
/** The new leader's monotonic clock: a process started recently, unrelated to the wall clock. */
const LEADER_NOW_MS = 4_321;
const voters = [voter(1), voter(2), voter(3)];
const warm = (id: number, lastRefreshAtMs?: number) =>
  standby(id, 'warm', {
    snapshotEveryMs: EVERY_MS,
    ...(lastRefreshAtMs === undefined ? {} : { lastRefreshAtMs }),
  });

test('a new leader refreshes a recorded warm standby only once snapshotEveryMs has passed', () => {
  const at = (wallNowMs: number, lastRefreshAtMs?: number) =>
    summary(
      planRedundancy(
        view([...voters, warm(5, lastRefreshAtMs)], { wallNowMs }),
        POLICY,
        LEADER_NOW_MS,
      ),
    );
  // Nothing recorded: this leader knows of no refresh, so one is due at once (as before).
  assert.equal(at(RECORDED_WALL_MS + 1_000), 'send-snapshot(5)');
  // Recorded 1 s, then 59.999 s ago: not due; 60 s ago: due.
  assert.equal(at(RECORDED_WALL_MS + 1_000, RECORDED_WALL_MS), 'nothing');
  assert.equal(at(RECORDED_WALL_MS + EVERY_MS - 1, RECORDED_WALL_MS), 'nothing');
  assert.equal(at(RECORDED_WALL_MS + EVERY_MS, RECORDED_WALL_MS), 'send-snapshot(5)');
  // Written by a leader whose wall clock ran ahead of ours: counts as just now, not the future.
  assert.equal(at(RECORDED_WALL_MS - 5_000, RECORDED_WALL_MS), 'nothing');
});

test("the later of the leader's own refresh and the registry's record counts", () => {
  const v = view([...voters, warm(5, RECORDED_WALL_MS)], {
    wallNowMs: RECORDED_WALL_MS + 50_000,
    // This leader refreshed it itself 5 s ago (its record not applied yet).
    lastSnapshotSentMs: new Map([[5, LEADER_NOW_MS - 5_000]]),
  });
  assert.equal(lastRefreshMs(v, v.members[3]!, LEADER_NOW_MS), LEADER_NOW_MS - 5_000);
  const older = view([...voters, warm(5, RECORDED_WALL_MS)], {
    wallNowMs: RECORDED_WALL_MS + 50_000,
    lastSnapshotSentMs: new Map([[5, LEADER_NOW_MS - 55_000]]),
  });
  assert.equal(lastRefreshMs(older, older.members[3]!, LEADER_NOW_MS), LEADER_NOW_MS - 50_000);
});

test('most overdue first, by the recorded refresh', () => {
  const v = view(
    [...voters, warm(5, RECORDED_WALL_MS - 10_000), warm(6, RECORDED_WALL_MS - 30_000)],
    {
      wallNowMs: RECORDED_WALL_MS + EVERY_MS,
    },
  );
  const action = planSnapshotRefresh(v, LEADER_NOW_MS);
  assert.equal(action?.to, 6);
  assert.match(action!.reason, /snapshot 90s old/);
});

test('property: due exactly when the recorded age reaches snapshotEveryMs, whatever the clocks', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 40 }),
      fc.integer({ min: -100_000, max: 200_000 }),
      fc.integer({ min: 0, max: 2 ** 31 }),
      (recordedMs, ageMs, leaderNowMs) => {
        const v = view([...voters, warm(5, recordedMs)], { wallNowMs: recordedMs + ageMs });
        const due = planSnapshotRefresh(v, leaderNowMs) !== null;
        assert.equal(due, ageMs >= EVERY_MS);
      },
    ),
  );
});
