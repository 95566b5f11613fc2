/**
 * Member mode's client-visible invariants, over the real KV state machine:
 *
 * - kv-state-hash: the KV state (an exact digest of the whole backend, see DigestBackend) after
 *   applying index i is the same on every member, snapshots restored included; and once the
 *   members have converged, `TandemStateMachine.hash()` agrees at equal applied indexes.
 * - acked-write-lost: after the liveness phase, every member holds, for each key, the latest
 *   acknowledged value or a later one.
 * - linearizable-read: a linearizable read that began after a put was acknowledged returns that
 *   value or a newer one. Values are unique integers, increasing per key in commit order (one put
 *   per key in flight, see MemberWorkload), so "newer" is a comparison.
 */
import { InvariantViolation } from './checker.js';

export class KvChecker {
  /** Digest of the state after applying each index, as first seen by any member. */
  private readonly digestAt = new Map<number, number>();
  /** Per key: the highest acknowledged value. */
  private readonly ackedMax = new Map<string, number>();
  /** Per key: the highest value ever proposed (a read may not return more). */
  private readonly issuedMax = new Map<string, number>();
  checksCount = 0;
  putsAcked = 0;
  readsChecked = 0;

  onApplied(node: number, index: number, digest: number, what = 'applying'): void {
    this.checksCount++;
    const seen = this.digestAt.get(index);
    if (seen === undefined) {
      this.digestAt.set(index, digest);
    } else if (seen !== digest) {
      throw new InvariantViolation(
        'kv-state-hash',
        `node ${node}'s KV state after ${what} ${index} differs from another member's ` +
          `(digest ${digest.toString(16)}, first seen ${seen.toString(16)})`,
      );
    }
  }

  /** Compares `TandemStateMachine.hash()` of members at the same applied index. */
  checkFinalHashes(hashes: readonly { node: number; applied: number; hash: string }[]): void {
    const byIndex = new Map<number, { node: number; hash: string }>();
    for (const h of hashes) {
      this.checksCount++;
      const first = byIndex.get(h.applied);
      if (first === undefined) byIndex.set(h.applied, h);
      else if (first.hash !== h.hash) {
        throw new InvariantViolation(
          'kv-state-hash',
          `at applied index ${h.applied}, node ${h.node}'s hash() is ${h.hash} but node ` +
            `${first.node}'s is ${first.hash}`,
        );
      }
    }
  }

  onPutIssued(key: string, value: number): void {
    if (value > (this.issuedMax.get(key) ?? 0)) this.issuedMax.set(key, value);
  }

  onPutAcked(key: string, value: number): void {
    this.putsAcked++;
    if (value > (this.ackedMax.get(key) ?? 0)) this.ackedMax.set(key, value);
  }

  /** What a read of `key` starting now must at least return. */
  ackedAt(key: string): number {
    return this.ackedMax.get(key) ?? 0;
  }

  onReadServed(node: number, readId: number, key: string, value: number, floor: number): void {
    this.checksCount++;
    this.readsChecked++;
    if (value < floor) {
      throw new InvariantViolation(
        'linearizable-read',
        `read r${readId} of ${key} on node ${node} returned ${value === 0 ? 'nothing' : `v${value}`}` +
          `, but v${floor} was acknowledged before the read began`,
      );
    }
    if (value > (this.issuedMax.get(key) ?? 0)) {
      throw new InvariantViolation(
        'linearizable-read',
        `read r${readId} of ${key} on node ${node} returned v${value}, which was never written`,
      );
    }
  }

  /** After the liveness phase: `value(key)` on a member holds every acknowledged put. */
  checkNoLostWrites(node: number, value: (key: string) => number): void {
    for (const [key, acked] of this.ackedMax) {
      this.checksCount++;
      const v = value(key);
      if (v < acked) {
        throw new InvariantViolation(
          'acked-write-lost',
          `node ${node} holds ${v === 0 ? 'nothing' : `v${v}`} for ${key}, but v${acked} was ` +
            'acknowledged',
        );
      }
    }
  }
}
