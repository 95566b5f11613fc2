/**
 * TEST DOUBLE: a tiny in-memory WatchableStore for the watch hub's tests, written from the
 * contract in src/kv/types.ts (not the real MVCC store; watch-mvcc.test.ts covers that one).
 * It keeps every event in one array, which is all the hub can observe.
 */
import { Buffer } from 'node:buffer';
import {
  EventType,
  type KeyRange,
  type KeyValue,
  type KvEvent,
  type LeaseId,
  NO_LEASE,
  type WatchableStore,
} from '../../src/kv/types.js';
import { rangeContains } from '../../src/kv/watch/key-range.js';
import { TandemError } from '../../src/util/errors.js';

export type FakeOp =
  | { readonly put: string; readonly value: string; readonly lease?: LeaseId }
  | { readonly del: string };

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

export class FakeWatchableStore implements WatchableStore {
  private revision = 1; // etcd's empty store is at revision 1
  private compacted = 0;
  private readonly live = new Map<string, KeyValue>();
  private log: KvEvent[] = [];
  private readonly listeners = new Set<(revision: number, events: readonly KvEvent[]) => void>();

  currentRevision(): number {
    return this.revision;
  }

  compactRevision(): number {
    return this.compacted;
  }

  eventsBetween(
    range: KeyRange,
    startRevision: number,
    endRevision: number,
    limit: number,
    withPrevKv: boolean,
  ): readonly KvEvent[] {
    // etcd's rule: only revisions strictly below the compaction revision are gone.
    if (startRevision < this.compacted) {
      throw new TandemError('COMPACTED', 'mvcc: required revision has been compacted');
    }
    const out: KvEvent[] = [];
    for (const event of this.log) {
      if (out.length === limit) break;
      const rev = event.kv.modRevision;
      if (rev < startRevision || rev >= endRevision || !rangeContains(range, event.kv.key))
        continue;
      out.push(withPrevKv ? event : { ...event, prevKv: null });
    }
    return out;
  }

  onCommit(listener: (revision: number, events: readonly KvEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  put(key: string, value: string): number {
    return this.txn([{ put: key, value }]);
  }

  del(key: string): number {
    return this.txn([{ del: key }]);
  }

  /** One revision for all ops (etcd sub-revisions); deletes of absent keys make no event. */
  txn(ops: readonly FakeOp[]): number {
    const revision = this.revision + 1;
    const events: KvEvent[] = [];
    for (const op of ops) {
      const event = 'put' in op ? this.applyPut(op, revision) : this.applyDel(op.del, revision);
      if (event !== null) events.push(event);
    }
    if (events.length === 0) return this.revision;
    this.revision = revision;
    this.log.push(...events);
    for (const listener of this.listeners) listener(revision, events);
    return revision;
  }

  /** Applies ops without notifying listeners, as a snapshot install does; then compacts. */
  installSnapshot(ops: readonly FakeOp[], compactTo: number): void {
    const listeners = [...this.listeners];
    this.listeners.clear();
    this.txn(ops);
    for (const listener of listeners) this.listeners.add(listener);
    if (compactTo > 0) this.compact(compactTo);
  }

  compact(revision: number): void {
    this.compacted = revision;
    this.log = this.log.filter((event) => event.kv.modRevision >= revision);
  }

  /** Every event ever committed (ignoring compaction), for reference checks. */
  readonly history: KvEvent[] = [];

  private applyPut(op: { put: string; value: string; lease?: LeaseId }, revision: number): KvEvent {
    const image = Buffer.from(op.put).toString('latin1');
    const prev = this.live.get(image) ?? null;
    const kv: KeyValue = {
      key: enc(op.put),
      createRevision: prev?.createRevision ?? revision,
      modRevision: revision,
      version: (prev?.version ?? 0) + 1,
      value: enc(op.value),
      lease: op.lease ?? NO_LEASE,
    };
    this.live.set(image, kv);
    return this.record({ type: EventType.Put, kv, prevKv: prev });
  }

  private applyDel(key: string, revision: number): KvEvent | null {
    const image = Buffer.from(key).toString('latin1');
    const prev = this.live.get(image);
    if (prev === undefined) return null;
    this.live.delete(image);
    const kv: KeyValue = {
      key: enc(key),
      createRevision: 0,
      modRevision: revision,
      version: 0,
      value: new Uint8Array(0),
      lease: NO_LEASE,
    };
    return this.record({ type: EventType.Delete, kv, prevKv: prev });
  }

  private record(event: KvEvent): KvEvent {
    this.history.push(event);
    return event;
  }
}
