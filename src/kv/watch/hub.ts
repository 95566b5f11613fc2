import { assert, assertUint } from '../../util/assert.js';
import { TandemError } from '../../util/errors.js';
import type { KvEvent, WatchableStore } from '../types.js';
import { STORE_COMPACTED_CODE, WatchError, WatchErrorCode } from './errors.js';
import {
  PROGRESS_INTERVAL_MS_DEFAULT,
  RESPONSE_BYTES_MAX_DEFAULT,
  STREAM_QUEUE_BYTES_MAX,
  STREAM_QUEUE_CONTROL_RESERVE,
  STREAM_QUEUE_RESPONSES_MAX,
  SYNC_BATCH_EVENTS_MAX,
  SYNC_EVENTS_PER_TICK_MAX,
  SYNC_WATCHERS_PER_TICK_MAX,
  WATCH_ID_NONE,
  WATCHER_PENDING_EVENTS_MAX,
  WATCHERS_PER_STREAM_MAX,
} from './limits.js';
import { eventsResponse, groupByRevision } from './response.js';
import { type StreamHost, type StreamLimits, WatchStream } from './stream.js';
import type { Watcher } from './watcher.js';
import { WatcherIndex } from './watcher-index.js';

export interface WatchHubOptions extends StreamLimits {
  readonly progressIntervalMs: number;
  readonly pendingEventsMax: number;
  readonly syncBatchEventsMax: number;
  readonly syncEventsPerTickMax: number;
  readonly syncWatchersPerTickMax: number;
}

export const WATCH_HUB_OPTIONS_DEFAULT: WatchHubOptions = Object.freeze({
  responseBytesMax: RESPONSE_BYTES_MAX_DEFAULT,
  queueResponsesMax: STREAM_QUEUE_RESPONSES_MAX,
  queueControlReserve: STREAM_QUEUE_CONTROL_RESERVE,
  queueBytesMax: STREAM_QUEUE_BYTES_MAX,
  watchersMax: WATCHERS_PER_STREAM_MAX,
  progressIntervalMs: PROGRESS_INTERVAL_MS_DEFAULT,
  pendingEventsMax: WATCHER_PENDING_EVENTS_MAX,
  syncBatchEventsMax: SYNC_BATCH_EVENTS_MAX,
  syncEventsPerTickMax: SYNC_EVENTS_PER_TICK_MAX,
  syncWatchersPerTickMax: SYNC_WATCHERS_PER_TICK_MAX,
});

/** A history read: events in [watcher.nextRevision, endRevision), whole revisions only. */
interface HistoryBatch {
  readonly events: readonly KvEvent[];
  readonly endRevision: number;
}

/**
 * All watch streams over one store (etcd's watchableStore). Synced watchers get each commit
 * from the store's `onCommit`, synchronously; unsynced ones (a start revision in the past, or
 * behind after their stream was full) catch up from `eventsBetween` in bounded batches when the
 * member calls `tick()`, as etcd's syncWatchersLoop; victims retry their held response on tick.
 * No timers: the caller ticks (every ~10-100 ms, and soon after `hasPendingWork()` turns true).
 *
 * Every step is synchronous, so a watcher moving from unsynced to synced cannot miss a commit:
 * no commit can land between its last history read and its joining the synced index.
 */
export class WatchHub implements StreamHost {
  readonly limits: WatchHubOptions;
  private readonly synced = new WatcherIndex();
  /** Insertion order is the catch-up order; a watcher not done goes to the back. */
  private readonly unsynced = new Set<Watcher>();
  private readonly victims = new Set<Watcher>();
  private readonly streams = new Set<WatchStream>();
  private readonly unsubscribe: () => void;
  private lastCommitRevision: number;
  private nextProgressMs: number | null = null;
  /** While set, every stream refuses watchers with it (the member serves no clients now). */
  private refusal: string | null = null;

  constructor(
    private readonly store: WatchableStore,
    options: Partial<WatchHubOptions> = {},
  ) {
    this.limits = { ...WATCH_HUB_OPTIONS_DEFAULT, ...options };
    const l = this.limits;
    assert(l.queueControlReserve >= 2 && l.queueControlReserve < l.queueResponsesMax);
    assert(l.syncBatchEventsMax > 0 && l.syncBatchEventsMax <= l.syncEventsPerTickMax);
    assert(l.responseBytesMax > 0 && l.progressIntervalMs > 0 && l.watchersMax > 0);
    this.lastCommitRevision = store.currentRevision();
    this.unsubscribe = store.onCommit((revision, events) => this.onCommit(revision, events), {
      // Only synced watchers take live events; the others read prevKv from history.
      prevKvWanted: () => this.synced.wantsPrevKv(),
    });
  }

  /** A new stream; `onReadable` runs when its queue turns non-empty (it must not call the hub). */
  openStream(onReadable: (() => void) | null = null): WatchStream {
    const stream = new WatchStream(this, onReadable);
    this.streams.add(stream);
    if (this.refusal !== null) stream.refuseAll(this.refusal);
    return stream;
  }

  /**
   * Cancels every watcher of every stream with `reason`, which the client sees (etcd's
   * cancel_reason), and refuses new ones while it is set; null accepts them again. The member
   * calls it when it stops (or starts again) serving clients, e.g. demoted to a standby.
   */
  refuseAll(reason: string | null): void {
    this.refusal = reason;
    for (const stream of this.streams) stream.refuseAll(reason);
  }

  /** One round of background work; `nowMs` drives periodic progress notifications. */
  tick(nowMs: number): void {
    for (const stream of this.streams) stream.flushCancels();
    this.retryVictims();
    this.syncUnsynced();
    for (const stream of this.streams) this.flushProgress(stream);
    this.periodicProgress(nowMs);
  }

  /** True while a tick would make progress: the caller may tick again soon. */
  hasPendingWork(): boolean {
    return this.unsynced.size > 0 || this.victims.size > 0;
  }

  stats(): { streams: number; synced: number; unsynced: number; victims: number } {
    return {
      streams: this.streams.size,
      synced: this.synced.size,
      unsynced: this.unsynced.size,
      victims: this.victims.size,
    };
  }

  /**
   * The store was replaced by a snapshot: its revision jumped with no `onCommit`. Synced
   * watchers have seen every commit up to the last one notified, so they resume from history
   * just after it (etcd's watchableStore.Restore); if the snapshot compacted that away, they
   * are cancelled with compactRevision, as etcd does.
   */
  storeRestored(): void {
    const current = this.store.currentRevision();
    assert(current >= this.lastCommitRevision, 'a snapshot never moves the store backwards');
    for (const watcher of this.synced.takeAll()) {
      watcher.nextRevision = Math.max(watcher.nextRevision, this.lastCommitRevision + 1);
      watcher.state = 'unsynced';
      this.unsynced.add(watcher);
    }
    this.lastCommitRevision = current;
  }

  /** Closes every stream and stops listening to the store. */
  close(): void {
    for (const stream of [...this.streams]) stream.close();
    this.unsubscribe();
  }

  // -------------------------------------------------------------------------------------------
  // StreamHost.

  currentRevision(): number {
    return this.store.currentRevision();
  }

  register(watcher: Watcher): void {
    assert(watcher.state === 'unsynced' && watcher.pending === null, 'a new watcher');
    const current = this.store.currentRevision();
    if (watcher.nextRevision === 0) watcher.nextRevision = current + 1;
    if (watcher.nextRevision > current) {
      this.makeSynced(watcher);
    } else if (isCompactedForWatch(watcher.nextRevision, this.store.compactRevision())) {
      const cancelled = this.cancelCompacted(watcher);
      assert(cancelled, 'watch() keeps room for the compacted cancel');
    } else {
      this.unsynced.add(watcher);
    }
  }

  unregister(watcher: Watcher): void {
    this.synced.delete(watcher);
    this.unsynced.delete(watcher);
    this.victims.delete(watcher);
    watcher.pending = null;
    watcher.state = 'closed';
  }

  flushProgress(stream: WatchStream): void {
    if (!stream.progressRequested) return;
    for (const watcher of stream.watcherList()) if (watcher.state !== 'synced') return;
    const sent = stream.offerControl({
      watchId: WATCH_ID_NONE,
      headerRevision: this.store.currentRevision(),
    });
    if (sent) stream.progressRequested = false;
  }

  streamClosed(stream: WatchStream): void {
    this.streams.delete(stream);
  }

  // -------------------------------------------------------------------------------------------
  // Live path.

  private onCommit(revision: number, events: readonly KvEvent[]): void {
    assert(revision > this.lastCommitRevision, 'commits arrive in revision order');
    this.lastCommitRevision = revision;
    if (this.synced.size === 0) return;
    const matched = new Map<Watcher, KvEvent[]>();
    for (const event of events) {
      assert(event.kv.modRevision === revision, 'a commit holds events of its own revision');
      this.synced.forEachMatch(event.kv.key, (watcher) => {
        if (revision < watcher.nextRevision || !watcher.accepts(event)) return;
        const list = matched.get(watcher);
        if (list === undefined) matched.set(watcher, [watcher.shape(event)]);
        else list.push(watcher.shape(event));
      });
    }
    for (const [watcher, list] of matched) this.deliverLive(watcher, revision, list);
  }

  private deliverLive(watcher: Watcher, revision: number, events: KvEvent[]): void {
    if (watcher.state !== 'synced') return; // cancelled by a callback during this commit
    const item = watcher.queued(eventsResponse(watcher.id, revision, events));
    if (watcher.stream.offerEvents([item]) === 1) {
      watcher.nextRevision = revision + 1;
      watcher.sentSinceProgress = true;
      return;
    }
    // The stream is full: hold this one response (bounded) and read the rest from history.
    this.synced.delete(watcher);
    if (events.length <= this.limits.pendingEventsMax) {
      watcher.state = 'victim';
      watcher.pending = item;
      watcher.nextRevision = revision + 1;
      this.victims.add(watcher);
    } else {
      watcher.state = 'unsynced';
      watcher.nextRevision = revision;
      this.unsynced.add(watcher);
    }
  }

  private retryVictims(): void {
    for (const watcher of [...this.victims]) {
      assert(watcher.state === 'victim' && watcher.pending !== null, 'a victim holds a response');
      if (watcher.stream.offerEvents([watcher.pending]) === 0) continue;
      watcher.pending = null;
      watcher.sentSinceProgress = true;
      this.victims.delete(watcher);
      if (watcher.nextRevision > this.store.currentRevision()) this.makeSynced(watcher);
      else {
        watcher.state = 'unsynced';
        this.unsynced.add(watcher);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // History path.

  private syncUnsynced(): void {
    let budget = this.limits.syncEventsPerTickMax;
    const round = takeFirst(this.unsynced, this.limits.syncWatchersPerTickMax);
    for (const watcher of round) {
      if (budget <= 0) break;
      if (watcher.state !== 'unsynced') continue;
      budget -= this.catchUp(watcher, budget);
      if (watcher.state === 'unsynced') {
        this.unsynced.delete(watcher); // to the back of the line: fairness between watchers
        this.unsynced.add(watcher);
      }
    }
  }

  /** Reads and queues history for one watcher until it is synced, blocked, or out of budget. */
  private catchUp(watcher: Watcher, budget: number): number {
    let read = 0;
    while (watcher.state === 'unsynced') {
      const current = this.store.currentRevision();
      if (watcher.nextRevision > current) {
        this.unsynced.delete(watcher);
        this.makeSynced(watcher);
        break;
      }
      if (read >= budget) break;
      if (isCompactedForWatch(watcher.nextRevision, this.store.compactRevision())) {
        this.cancelCompacted(watcher);
        break;
      }
      if (!watcher.stream.hasRoomForEvents()) break;
      const batch = this.readHistory(watcher, current);
      if (batch === null) break;
      read += Math.max(1, batch.events.length);
      if (!this.queueHistory(watcher, batch, current)) break;
    }
    return read;
  }

  /**
   * Events in [nextRevision, current] up to the batch size, cut back to a revision boundary; a
   * single revision larger than the batch is read whole (etcd never splits a revision). Null
   * when the store reports the range compacted (the watcher is then cancelled).
   */
  private readHistory(watcher: Watcher, current: number): HistoryBatch | null {
    const limit = this.limits.syncBatchEventsMax;
    const start = watcher.nextRevision;
    try {
      const events = this.eventsBetween(watcher, start, current + 1, limit);
      if (events.length < limit) return { events, endRevision: current + 1 };
      const last = events[events.length - 1]!.kv.modRevision;
      if (events[0]!.kv.modRevision !== last) {
        const cut = events.findIndex((event) => event.kv.modRevision === last);
        return { events: events.slice(0, cut), endRevision: last };
      }
      const whole = this.eventsBetween(watcher, last, last + 1, Number.MAX_SAFE_INTEGER);
      return { events: whole, endRevision: last + 1 };
    } catch (err) {
      if (!(err instanceof TandemError) || err.code !== STORE_COMPACTED_CODE) throw err;
      this.cancelCompacted(watcher);
      return null;
    }
  }

  private eventsBetween(watcher: Watcher, start: number, end: number, limit: number): KvEvent[] {
    const events = this.store.eventsBetween(
      watcher.range,
      start,
      end,
      limit,
      watcher.options.prevKv,
    );
    for (let i = 0; i < events.length; i++) {
      const revision = events[i]!.kv.modRevision;
      assert(revision >= start && revision < end, 'store returned an event outside the range');
      assert(i === 0 || revision >= events[i - 1]!.kv.modRevision, 'store events out of order');
    }
    assert(events.length <= limit, 'store returned more events than the limit');
    return [...events];
  }

  /** Queues what fits; true when the whole batch went out. */
  private queueHistory(watcher: Watcher, batch: HistoryBatch, current: number): boolean {
    const events = batch.events.filter((event) => watcher.accepts(event));
    const groups = groupByRevision(
      events.map((event) => watcher.shape(event)),
      this.limits.responseBytesMax,
    );
    const items = groups.map((group) => watcher.queued(eventsResponse(watcher.id, current, group)));
    const accepted = watcher.stream.offerEvents(items);
    if (accepted > 0) watcher.sentSinceProgress = true;
    if (accepted === items.length) {
      watcher.nextRevision = batch.endRevision;
      return true;
    }
    // The first refused group starts a revision: resume there; nothing is held in memory.
    watcher.nextRevision = groups[accepted]![0]!.kv.modRevision;
    return false;
  }

  // -------------------------------------------------------------------------------------------

  private makeSynced(watcher: Watcher): void {
    assert(watcher.nextRevision > this.store.currentRevision(), 'synced means caught up');
    watcher.state = 'synced';
    this.synced.add(watcher);
  }

  /** etcd: a watcher whose history is compacted gets compactRevision and is cancelled. */
  private cancelCompacted(watcher: Watcher): boolean {
    const compactRevision = this.store.compactRevision();
    assert(compactRevision > 0, 'compacted history implies a compaction');
    const sent = watcher.stream.offerControl({
      watchId: watcher.id,
      headerRevision: this.store.currentRevision(),
      compactRevision,
      canceled: true,
      cancelReason: new WatchError(WatchErrorCode.Compacted).message,
    });
    if (sent) watcher.stream.removeCancelled(watcher);
    return sent;
  }

  /** etcd's progress ticker: watchers with progressNotify that got no events for an interval. */
  private periodicProgress(nowMs: number): void {
    assertUint(nowMs, 'nowMs');
    if (this.nextProgressMs === null) this.nextProgressMs = nowMs + this.limits.progressIntervalMs;
    if (nowMs < this.nextProgressMs) return;
    this.nextProgressMs = nowMs + this.limits.progressIntervalMs;
    const revision = this.store.currentRevision();
    for (const stream of this.streams) {
      for (const watcher of stream.watcherList()) {
        if (!watcher.options.progressNotify) continue;
        if (!watcher.sentSinceProgress && watcher.state === 'synced') {
          stream.offerControl({ watchId: watcher.id, headerRevision: revision });
        }
        watcher.sentSinceProgress = false;
      }
    }
  }
}

/**
 * etcd's rule (watcher_group.go `choose`: `w.minRev < compactRev`): history strictly below the
 * compaction revision is gone; a watch from the compaction revision itself streams from it,
 * since compaction keeps every key's revision at that point. 0 = never compacted.
 */
export function isCompactedForWatch(startRevision: number, compactRevision: number): boolean {
  return compactRevision > 0 && startRevision < compactRevision;
}

function takeFirst<T>(items: Iterable<T>, count: number): T[] {
  const taken: T[] = [];
  for (const item of items) {
    if (taken.length === count) break;
    taken.push(item);
  }
  return taken;
}
