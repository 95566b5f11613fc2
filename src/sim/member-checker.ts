/**
 * Member mode's checks of the parts around the member loop, which clients meet through the etcd
 * façade (src/server/facade.ts): role truth, ack=all, lease expiry, self-publication. Each is
 * judged against ground truth the simulator holds (what was committed when, every member's
 * durable log, when a client's keep-alive was acknowledged), never against the member's own view.
 *
 * - served-from-the-past (role truth): a member answers a client only from state at least as new
 *   as what the cluster had committed when its incarnation started. A restarted member may hold
 *   a state (and a registry) of any age; until a role check has caught it up it must not serve:
 *   it may have been demoted, and a serializable read from it would travel back in time across
 *   its own restart.
 * - standby-served (role truth): a member answers no read while its own applied registry says it
 *   is a standby (a demotion applied while the read waited for its barrier refuses it).
 * - ack-all-durable: when a write with ack=all is acknowledged, every voter (of the configuration
 *   its entry was committed in, still a voter now) holds the entry durably.
 * - lease-expired-early: a lease is revoked no sooner than its TTL after the start of the latest
 *   keep-alive (or grant) a client saw succeed, less one election timeout (a new leader extends
 *   every lease by an election timeout; a deposed leader may still renew for about that long).
 * - published: after the liveness phase, every up member of the configuration is registered with
 *   the name and client URLs it publishes.
 */
import type { ConfState, Entry, NodeId } from '../raft/types.js';
import type { CommandResult } from '../server/tandem-state-machine.js';
import { InvariantViolation } from './checker.js';

/** Leases the checker follows at once, at most (the workload keeps fewer). */
const LEASES_MAX = 1024;

export interface ServedBy {
  readonly id: NodeId;
  readonly appliedIndex: number;
  /** What the cluster had committed when this incarnation started. */
  readonly committedAtStart: number;
  /** This member's role in its own applied registry (undefined: not registered). */
  readonly registryRole: string | undefined;
}

export interface DurableLog {
  readonly firstIndex: number;
  readonly lastIndex: number;
  /** The term of `index` in the log, or null outside [firstIndex, lastIndex]. */
  termAt(index: number): number | null;
}

interface LeaseRecord {
  readonly ttlMs: number;
  /** The start of the latest grant or keep-alive a client saw succeed (ms). */
  renewedFromMs: number;
}

export class MemberChecker {
  checksCount = 0;
  /** The highest index any member applied: committed. */
  private committedMax = 0;
  /** Configurations by the index of the change that made them, ascending. */
  private readonly confs: { readonly index: number; readonly voters: readonly NodeId[] }[] = [];
  private readonly indexOfRevision = new Map<number, number>();
  private readonly termOfIndex = new Map<number, number>();
  private readonly leases = new Map<string, LeaseRecord>();
  leasesRevoked = 0;

  constructor(
    initial: ConfState,
    private readonly electionMs: number,
  ) {
    this.confs.push({ index: 0, voters: votersOf(initial) });
  }

  /** The index committed as of now, at least `known` (a member's commit index). */
  committedFloor(known: number): number {
    return Math.max(this.committedMax, known);
  }

  onApplied(entry: Entry, result: unknown, nowMs: number): void {
    if (entry.index > this.committedMax) this.committedMax = entry.index;
    if (!this.termOfIndex.has(entry.index)) this.termOfIndex.set(entry.index, entry.term);
    const r = result as CommandResult | undefined;
    if (r === undefined || typeof r !== 'object' || !('kind' in r)) return;
    if (r.kind === 'applied' && r.response.type === 'put') {
      const revision = r.response.response.header.revision;
      if (!this.indexOfRevision.has(revision)) this.indexOfRevision.set(revision, entry.index);
    }
    if (r.kind === 'leaseRevoked') this.onLeaseRevoked(r.id, nowMs);
  }

  onConfApplied(index: number, confState: ConfState): void {
    const last = this.confs[this.confs.length - 1]!;
    if (index > last.index) this.confs.push({ index, voters: votersOf(confState) });
  }

  /** A member answered a client: `read` for reads (refused as a standby), false for writes. */
  checkServed(what: string, by: ServedBy, read: boolean): void {
    this.checksCount++;
    if (by.appliedIndex < by.committedAtStart) {
      throw new InvariantViolation(
        'served-from-the-past',
        `n${by.id} answered ${what} from applied index ${by.appliedIndex}, but the cluster had ` +
          `committed ${by.committedAtStart} when this incarnation started (role not confirmed)`,
      );
    }
    if (read && by.registryRole === 'standby') {
      throw new InvariantViolation(
        'standby-served',
        `n${by.id} answered ${what} while its own applied registry says it is a standby`,
      );
    }
  }

  /** A write acknowledged with ack=all at `revision`: every voter must hold it durably. */
  checkAckAll(revision: number, logOf: (id: NodeId) => DurableLog): void {
    this.checksCount++;
    const index = this.indexOfRevision.get(revision);
    if (index === undefined) {
      throw new InvariantViolation(
        'ack-all-durable',
        `a write at revision ${revision} was acknowledged but no member applied it`,
      );
    }
    const term = this.termOfIndex.get(index)!;
    const now = this.confs[this.confs.length - 1]!.voters;
    let atCommit = this.confs[0]!.voters;
    for (const c of this.confs) if (c.index < index) atCommit = c.voters;
    for (const id of atCommit) {
      if (!now.includes(id)) continue;
      const log = logOf(id);
      const holds =
        index < log.firstIndex || (index <= log.lastIndex && log.termAt(index) === term);
      if (!holds) {
        throw new InvariantViolation(
          'ack-all-durable',
          `a write at index ${index} (revision ${revision}) was acknowledged with ack=all, but ` +
            `voter n${id}'s durable log holds ${log.firstIndex}..${log.lastIndex}` +
            `${index <= log.lastIndex && index >= log.firstIndex ? ` with term ${log.termAt(index)} at ${index}, not ${term}` : ''}`,
        );
      }
    }
  }

  onLeaseGranted(id: bigint, ttlSeconds: number, startMs: number): void {
    if (this.leases.size >= LEASES_MAX) return;
    this.leases.set(id.toString(), { ttlMs: ttlSeconds * 1000, renewedFromMs: startMs });
  }

  onKeepAliveAcked(id: bigint, startMs: number): void {
    const lease = this.leases.get(id.toString());
    if (lease !== undefined) lease.renewedFromMs = Math.max(lease.renewedFromMs, startMs);
  }

  /** The workload revoked it itself: no expiry to judge. */
  forgetLease(id: bigint): void {
    this.leases.delete(id.toString());
  }

  private onLeaseRevoked(id: bigint, nowMs: number): void {
    const lease = this.leases.get(id.toString());
    if (lease === undefined) return; // judged already (the first member to apply it), or not ours
    this.leases.delete(id.toString());
    this.leasesRevoked++;
    this.checksCount++;
    const earliestMs = lease.renewedFromMs + lease.ttlMs - this.electionMs;
    if (nowMs < earliestMs) {
      throw new InvariantViolation(
        'lease-expired-early',
        `lease ${id.toString(16)} (TTL ${lease.ttlMs / 1000}s) was revoked at ` +
          `${nowMs.toFixed(1)}ms, but a keep-alive started at ${lease.renewedFromMs.toFixed(1)}ms ` +
          `succeeded: not before ${earliestMs.toFixed(1)}ms`,
      );
    }
  }

  /** After the liveness phase: `id` is registered as it publishes itself. */
  checkPublished(
    id: NodeId,
    record: { readonly name: string; readonly clientUrls: readonly string[] } | undefined,
    expected: { readonly name: string; readonly clientUrls: readonly string[] },
  ): void {
    this.checksCount++;
    const same =
      record !== undefined &&
      record.name === expected.name &&
      record.clientUrls.length === expected.clientUrls.length &&
      record.clientUrls.every((u, i) => u === expected.clientUrls[i]);
    if (!same) {
      throw new InvariantViolation(
        'published',
        `n${id} is registered as ${record === undefined ? 'nothing' : `${JSON.stringify(record.name)} ${JSON.stringify(record.clientUrls)}`} ` +
          `after the liveness phase; it publishes ${JSON.stringify(expected.name)} ${JSON.stringify(expected.clientUrls)}`,
      );
    }
  }
}

function votersOf(cs: ConfState): NodeId[] {
  return [...new Set([...cs.voters, ...cs.votersOutgoing])];
}
