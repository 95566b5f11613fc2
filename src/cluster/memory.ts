/**
 * The policy memory: what a member's redundancy rounds remember from one round to the next
 * (src/cluster/round.ts runs them). Everything else a round needs it observes afresh. Pure: no
 * clock, no I/O; times come in as ms of the member's clock (`nowMs`) or, for the registry's
 * refresh records, of the wall clock (`wallNowMs`).
 *
 *   detector           the leader's failure detector, one per leadership term (health.ts)
 *   refreshedMs        when each warm standby last had the log, as far as this member knows
 *   placementSeen      each member's placement at the previous round (to notice unstages)
 *   refreshing         warm refreshes this leader carries on: staged learners, since when
 *   refreshesToRecord  refreshes completed here, to record in the registry (wall-clock ms)
 *   lastTransferMs     this member's latest leader-zone transfer
 *
 * Bounded by the registry: every map holds at most MEMBERS_MAX entries.
 */
import type { NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import type { RegistryCommand } from './commands.js';
import { type DetectorLimits, FailureDetector, type MemberHealth } from './health.js';
import { MEMBERS_MAX, type MemberRecord, type Placement, restingPlacement } from './registry.js';

/** A warm standby staged for a refresh goes back outside after this at most, caught up or not. */
export const WARM_REFRESH_TIMEOUT_MS = 30_000;

/** What the memory holds, as plain data (traces, golden files). */
export interface MemorySnapshot {
  readonly detectorTerm: number | null;
  readonly refreshedMs: ReadonlyMap<NodeId, number>;
  readonly refreshing: ReadonlyMap<NodeId, number>;
  readonly refreshesToRecord: ReadonlyMap<NodeId, number>;
  readonly lastTransferMs: number;
}

export class PolicyMemory {
  private detector: FailureDetector | null = null;
  /** The leadership term `detector` was made for (meaningless while it is null). */
  private detectorTerm = 0;
  /**
   * When each warm standby last got the log (member clock): set where this member, as leader,
   * begins or ends a refresh, and on every member when the registry shows one go back outside
   * (whoever led), so a new leader does not refresh every warm standby again at once. The
   * planner reads it as `RedundancyView.lastSnapshotSentMs`.
   */
  private readonly refreshed = new Map<NodeId, number>();
  private readonly placementSeen = new Map<NodeId, Placement>();
  /**
   * Warm (or cold) standbys this leader lets catch up as learners: since when, and whether the
   * staging has been seen applied (a refresh whose staging is still in flight is not over).
   */
  private readonly refreshing = new Map<NodeId, { sinceMs: number; staged: boolean }>();
  /** Completed refreshes to record in the registry (wall-clock ms), one per round. */
  private readonly toRecord = new Map<NodeId, number>();
  private lastTransferMs = Number.NEGATIVE_INFINITY;

  /** The leader's live health of `id` (undefined on a member that does not lead). */
  health(id: NodeId): MemberHealth | undefined {
    return this.detector?.get(id);
  }

  /** The planner's `lastSnapshotSentMs`: a live, read-only view of `refreshed`. */
  get refreshedMs(): ReadonlyMap<NodeId, number> {
    return this.refreshed;
  }

  snapshot(): MemorySnapshot {
    return {
      detectorTerm: this.detector === null ? null : this.detectorTerm,
      refreshedMs: new Map(this.refreshed),
      refreshing: new Map([...this.refreshing].map(([id, r]) => [id, r.sinceMs])),
      refreshesToRecord: new Map(this.toRecord),
      lastTransferMs: this.lastTransferMs,
    };
  }

  /**
   * Every round, on every member: a warm standby that left the configuration (a learner, now
   * outside) has just caught up with the log, whichever leader staged it: its latest refresh.
   */
  noteRegistry(members: readonly MemberRecord[], nowMs: number): void {
    assert(members.length <= MEMBERS_MAX, 'registry size');
    for (const m of members) {
      const before = this.placementSeen.get(m.id);
      if (before === 'learner' && m.placement === 'none' && m.standbyMode === 'warm') {
        this.refreshed.set(m.id, nowMs);
      }
      this.placementSeen.set(m.id, m.placement);
    }
    if (this.placementSeen.size > members.length) {
      for (const id of this.placementSeen.keys()) {
        if (!members.some((m) => m.id === id)) this.placementSeen.delete(id);
      }
    }
  }

  /**
   * The detector of leadership term `term`: a new term gets a new one, seeded from the registry
   * (a new leader continues the recorded clocks: health.ts), and takes over the stagings it
   * finds (`inheritStaged`).
   */
  lead(term: number, members: readonly MemberRecord[], nowMs: number, limits: DetectorLimits) {
    if (this.detector === null || this.detectorTerm !== term) {
      this.detector = new FailureDetector(limits);
      this.detectorTerm = term;
      this.detector.seed(members, nowMs);
      this.inheritStaged(members, nowMs);
    }
    return this.detector;
  }

  /** This member does not plan (not leading, or leading only to hand over): no health view. */
  stopLeading(): void {
    this.detector = null;
  }

  /**
   * Warm and cold standbys a new leader finds staged were being refreshed or made ready for a
   * replacement by the old leader: finish that (unstaged once caught up: `holdRefresh`) rather
   * than unstage them at once and stage them again a round later.
   */
  private inheritStaged(members: readonly MemberRecord[], nowMs: number): void {
    for (const m of members) {
      const staged =
        m.placement === 'learner' && restingPlacement(m.role, m.standbyMode) === 'none';
      if (staged && !this.refreshing.has(m.id)) {
        this.refreshing.set(m.id, { sinceMs: nowMs, staged: true });
      }
    }
  }

  /**
   * A refresh ends when its learner leaves (unstaged) or is promoted; one whose staging never
   * applied (refused, lost with a leader) ends after WARM_REFRESH_TIMEOUT_MS. A round that runs
   * while the staging is in flight does not end it: once staged, the standby is held until it
   * caught up (`holdRefresh`), not returned outside at once.
   */
  endRefreshes(members: readonly MemberRecord[], nowMs: number): void {
    for (const [id, r] of this.refreshing) {
      if (members.find((m) => m.id === id)?.placement === 'learner') r.staged = true;
      else if (r.staged || nowMs - r.sinceMs >= WARM_REFRESH_TIMEOUT_MS) this.refreshing.delete(id);
    }
  }

  /** A warm refresh begins: `id` is staged as a learner now. */
  startRefresh(id: NodeId, nowMs: number): void {
    this.refreshing.set(id, { sinceMs: nowMs, staged: false });
    this.refreshed.set(id, nowMs);
    assert(this.refreshing.size <= MEMBERS_MAX, 'refreshes bounded by the registry');
  }

  /**
   * The planner would unstage `id`: a refresh in progress is not undone before the standby
   * caught up (`lagEntries` at most `catchUpEntriesMax`) or WARM_REFRESH_TIMEOUT_MS passed.
   * Returns why it holds, or null (the refresh, if any, ends now: the unstage goes ahead).
   */
  holdRefresh(
    id: NodeId,
    lagEntries: number,
    catchUpEntriesMax: number,
    nowMs: number,
  ): string | null {
    const sinceMs = this.refreshing.get(id)?.sinceMs;
    if (sinceMs === undefined) return null;
    assert(sinceMs <= nowMs, 'a refresh cannot begin in the future');
    if (lagEntries > catchUpEntriesMax && nowMs - sinceMs < WARM_REFRESH_TIMEOUT_MS) {
      return `refresh of member ${id} in progress: ${lagEntries} entries behind after ${nowMs - sinceMs}ms (unstaged within ${catchUpEntriesMax} entries or after ${WARM_REFRESH_TIMEOUT_MS}ms)`;
    }
    this.refreshing.delete(id);
    this.refreshed.set(id, nowMs);
    return null;
  }

  /**
   * Warm standby `id` is unstaged while caught up (whether staged for a refresh or for a
   * replacement no longer needed): it holds the log as of now, a refresh to record.
   */
  noteCaughtUp(id: NodeId, wallNowMs: number): void {
    this.toRecord.set(id, wallNowMs);
    assert(this.toRecord.size <= MEMBERS_MAX, 'refresh records bounded by the registry');
  }

  /**
   * The next refresh to record (a registry command), or null; each is offered once. A member
   * gone, or no longer a warm standby (promoted, mode changed), has nothing to record.
   */
  nextRefreshRecord(members: readonly MemberRecord[]): RegistryCommand | null {
    for (const [id, atMs] of this.toRecord) {
      this.toRecord.delete(id);
      const m = members.find((r) => r.id === id);
      if (m === undefined || m.standbyMode !== 'warm' || m.role !== 'standby') continue;
      return { kind: 'record-refresh', id, atMs };
    }
    return null;
  }

  /** Not leading: the refreshes to record are the next leader's to find out. */
  dropRefreshRecords(): void {
    this.toRecord.clear();
  }

  /** At most one leader-zone transfer per `cooldownMs`: true when one may start now. */
  transferAllowed(nowMs: number, cooldownMs: number): boolean {
    return nowMs - this.lastTransferMs >= cooldownMs;
  }

  noteTransfer(nowMs: number): void {
    assert(nowMs >= this.lastTransferMs, 'transfers in time order');
    this.lastTransferMs = nowMs;
  }
}
