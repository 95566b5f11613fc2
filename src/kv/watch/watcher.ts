import { assert, assertUint } from '../../util/assert.js';
import { EventType, type KeyRange, type KvEvent } from '../types.js';
import { type ControlFields, responseBytes, type WatchResponse } from './response.js';

/**
 * Where a watcher is in its life (etcd's synced / unsynced / victim watcher groups):
 *
 *   create ──(start 0 or future)──> synced <──────────────┐
 *      │                              │ stream full       │ caught up
 *      └──(start in the past)──> unsynced <── victim <────┤
 *                                   │  ^          (pending delivered, history left to read)
 *                                   └──┘ reads history in batches each tick
 *
 * synced: receives each commit as it happens. unsynced: reads history from `nextRevision`.
 * victim: holds one response its full stream refused, retried each tick.
 */
export type WatcherState = 'synced' | 'unsynced' | 'victim' | 'closed';

/** A response on its way into a stream's queue, with its size estimate and fragment wish. */
export interface QueuedResponse {
  readonly response: WatchResponse;
  readonly bytes: number;
  readonly fragment: boolean;
}

/**
 * The stream a watcher belongs to, as the hub reaches it through the watcher: where the watcher's
 * responses are queued, and who forgets the watcher once the hub cancels it. A stream creates and
 * owns its watchers (stream.ts, above this file, implements it); a watcher needs no more of it.
 */
export interface WatcherOwner {
  /** Room for at least one more event response. */
  hasRoomForEvents(): boolean;
  /** Queues the longest prefix of `items` that fits; returns its length. */
  offerEvents(items: readonly QueuedResponse[]): number;
  /** Queues a control response if there is any room; false otherwise. */
  offerControl(fields: ControlFields): boolean;
  /** Forgets a watcher the hub cancelled (compacted history). */
  removeCancelled(watcher: Watcher): void;
}

export interface WatcherOptions {
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly prevKv: boolean;
  readonly progressNotify: boolean;
  readonly fragment: boolean;
}

export class Watcher {
  state: WatcherState = 'unsynced';
  /**
   * Invariant: every matching event below this revision (and at or above the start revision)
   * is queued on the stream or held in `pending`, once and in order; none at or above it is.
   */
  nextRevision: number;
  /** The response a full stream refused (state victim only); its events are below nextRevision. */
  pending: QueuedResponse | null = null;
  /** Events went out since the last periodic progress tick (etcd's per-watcher progress flag). */
  sentSinceProgress = false;

  constructor(
    readonly id: number,
    readonly stream: WatcherOwner,
    readonly range: KeyRange,
    startRevision: number,
    readonly options: WatcherOptions,
  ) {
    assertUint(id, 'watch id');
    assertUint(startRevision, 'start revision');
    this.nextRevision = startRevision;
  }

  accepts(event: KvEvent): boolean {
    if (event.type === EventType.Put) return !this.options.noPut;
    return !this.options.noDelete;
  }

  /** The event as this watcher sees it: prevKv only when asked for. */
  shape(event: KvEvent): KvEvent {
    if (this.options.prevKv || event.prevKv === null) return event;
    return { type: event.type, kv: event.kv, prevKv: null };
  }

  queued(response: WatchResponse): QueuedResponse {
    assert(response.watchId === this.id, 'a watcher queues its own responses');
    return { response, bytes: responseBytes(response.events), fragment: this.options.fragment };
  }
}
