import { assert } from '../../util/assert.js';
import { BoundedQueue } from './bounded-queue.js';
import { WatchError, WatchErrorCode } from './errors.js';
import { isEmptyRange } from './key-range.js';
import { WATCH_ID_NONE } from './limits.js';
import {
  type ControlFields,
  controlResponse,
  fragmentResponse,
  type WatchResponse,
} from './response.js';
import { type QueuedResponse, Watcher, type WatcherOwner } from './watcher.js';

/** etcd's WatchCreateRequest. Omitted fields take etcd's defaults. */
export interface WatchCreateRequest {
  readonly key: Uint8Array;
  /** Empty: the single key; [0]: every key >= key; otherwise [key, rangeEnd). */
  readonly rangeEnd?: Uint8Array;
  /** 0: from the next revision on (live only). In the past: history first. */
  readonly startRevision?: number;
  /** 0: the stream picks one (etcd's AutoWatchID). */
  readonly watchId?: number;
  readonly noPut?: boolean;
  readonly noDelete?: boolean;
  readonly prevKv?: boolean;
  readonly progressNotify?: boolean;
  readonly fragment?: boolean;
}

/** What a stream needs from its hub (hub.ts implements it; a type, so no import cycle). */
export interface StreamHost {
  readonly limits: StreamLimits;
  currentRevision(): number;
  register(watcher: Watcher): void;
  unregister(watcher: Watcher): void;
  flushProgress(stream: WatchStream): void;
  streamClosed(stream: WatchStream): void;
}

export interface StreamLimits {
  readonly responseBytesMax: number;
  readonly queueResponsesMax: number;
  readonly queueControlReserve: number;
  readonly queueBytesMax: number;
  readonly watchersMax: number;
}

/**
 * One client's watch stream (one gRPC Watch call): its watchers, their ids, and a bounded queue
 * of responses the API edge drains with `next()`. Event responses may fill the queue up to the
 * control reserve; the reserve keeps room to acknowledge creates and cancels.
 */
export class WatchStream implements WatcherOwner {
  private readonly queue: BoundedQueue<QueuedResponse>;
  /** Estimated bytes of the event responses in `queue`. */
  private queuedBytes = 0;
  /** Pieces of a fragmented response already taken from the queue, still to hand out. */
  private fragments: WatchResponse[] = [];
  private readonly watchers = new Map<number, Watcher>();
  private nextAutoId = 0;
  private closed = false;
  /** While set (the member stopped serving clients), every create is refused with it. */
  private refusalReason: string | null = null;
  /**
   * Cancels owed to the client that did not fit the queue yet, oldest first. At most
   * `watchersMax`: no watcher is created while one is owed (see `watch`).
   */
  private owedCancels: { readonly watchId: number; readonly reason: string }[] = [];
  /** A progress request waits until every watcher of the stream is synced (etcd 3.5.8+). */
  progressRequested = false;

  constructor(
    private readonly host: StreamHost,
    private readonly onReadable: (() => void) | null,
  ) {
    this.queue = new BoundedQueue(host.limits.queueResponsesMax);
  }

  /**
   * Creates a watcher and queues etcd's `created` response; returns its id. A refused create
   * queues `created` + `canceled` with the reason, and returns -1, as etcd. Throws only when the
   * queue cannot take even that (WATCH_STREAM_BACKLOGGED) or the stream is closed.
   */
  watch(request: WatchCreateRequest): number {
    this.checkOpen();
    this.flushCancels();
    // Room for `created` and a possible immediate compacted cancel.
    if (this.queue.free < 2 || this.owedCancels.length > 0) {
      throw new WatchError(WatchErrorCode.StreamBacklogged);
    }
    const refusal = this.refusalReason ?? this.validate(request)?.message ?? null;
    if (refusal !== null) {
      this.pushControl({
        watchId: WATCH_ID_NONE,
        created: true,
        canceled: true,
        cancelReason: refusal,
      });
      return WATCH_ID_NONE;
    }
    const id = this.allocateId(request.watchId ?? 0);
    const watcher = new Watcher(
      id,
      this,
      // Copies: the caller may reuse its request buffers.
      { key: Uint8Array.from(request.key), rangeEnd: Uint8Array.from(request.rangeEnd ?? []) },
      request.startRevision ?? 0,
      {
        noPut: request.noPut ?? false,
        noDelete: request.noDelete ?? false,
        prevKv: request.prevKv ?? false,
        progressNotify: request.progressNotify ?? false,
        fragment: request.fragment ?? false,
      },
    );
    this.watchers.set(id, watcher);
    this.pushControl({ watchId: id, created: true });
    this.host.register(watcher);
    return id;
  }

  /** Cancels a watcher and queues etcd's `canceled` response. False for an unknown id. */
  cancel(watchId: number): boolean {
    this.checkOpen();
    const watcher = this.watchers.get(watchId);
    if (watcher === undefined) return false;
    if (this.queue.free < 1) throw new WatchError(WatchErrorCode.StreamBacklogged);
    this.remove(watcher);
    this.pushControl({ watchId, canceled: true });
    return true;
  }

  /**
   * Cancels every watcher with `reason` (etcd's cancel_reason: the client sees why) and refuses
   * new ones while it is set; null accepts them again. Used when the member stops serving
   * clients (it became a standby). A cancel the queue cannot take now is owed (`flushCancels`).
   */
  refuseAll(reason: string | null): void {
    if (this.closed) return;
    this.refusalReason = reason;
    if (reason === null) return;
    for (const watcher of [...this.watchers.values()]) {
      this.remove(watcher);
      this.owedCancels.push({ watchId: watcher.id, reason });
    }
    assert(this.owedCancels.length <= this.host.limits.watchersMax, 'owed cancels are bounded');
    this.flushCancels();
  }

  /** Queues the owed cancels that fit (the hub calls it on tick; `next` when room frees up). */
  flushCancels(): void {
    let sent = 0;
    for (const owed of this.owedCancels) {
      const fields = { watchId: owed.watchId, canceled: true, cancelReason: owed.reason };
      if (!this.offerControl(fields)) break;
      sent += 1;
    }
    if (sent > 0) this.owedCancels.splice(0, sent);
  }

  /** Asks for a stream-wide progress notification (watch id -1) once all watchers are synced. */
  requestProgress(): void {
    this.checkOpen();
    this.progressRequested = true;
    this.host.flushProgress(this);
  }

  /** The next response to send, or undefined when there is none now. */
  next(): WatchResponse | undefined {
    const piece = this.fragments.shift();
    if (piece !== undefined) return piece;
    const item = this.queue.shift();
    if (this.owedCancels.length > 0) this.flushCancels(); // after the shift: there is room
    if (item === undefined) return undefined;
    if (item.response.events.length > 0) this.queuedBytes -= item.bytes;
    assert(this.queuedBytes >= 0, 'queued bytes never go negative');
    if (!item.fragment) return item.response;
    const pieces = fragmentResponse(item.response, this.host.limits.responseBytesMax);
    this.fragments = pieces.slice(1);
    return pieces[0];
  }

  /** Responses waiting, counting a fragmented response in progress as its remaining pieces. */
  get pendingResponses(): number {
    return this.queue.length + this.fragments.length;
  }

  /** No room even for control responses: the API edge should stop reading requests. */
  get backlogged(): boolean {
    return this.queue.free < 2;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  watcherList(): readonly Watcher[] {
    return [...this.watchers.values()];
  }

  close(): void {
    if (this.closed) return;
    for (const watcher of [...this.watchers.values()]) this.remove(watcher);
    this.closed = true;
    this.owedCancels = [];
    this.queue.clear();
    this.queuedBytes = 0;
    this.fragments = [];
    this.host.streamClosed(this);
  }

  // -------------------------------------------------------------------------------------------
  // For the hub.

  /** Room for at least one more event response (an empty queue always has room). */
  hasRoomForEvents(): boolean {
    if (this.closed) return false;
    if (this.queue.length === 0) return true;
    const limits = this.host.limits;
    return (
      this.queue.length < limits.queueResponsesMax - limits.queueControlReserve &&
      this.queuedBytes < limits.queueBytesMax
    );
  }

  /**
   * Queues the longest prefix of `items` that fits and returns its length. Never takes part of a
   * response; an empty queue takes one response whatever its size, so progress is guaranteed.
   */
  offerEvents(items: readonly QueuedResponse[]): number {
    const limits = this.host.limits;
    let accepted = 0;
    for (const item of items) {
      assert(item.response.events.length > 0, 'event responses carry events');
      const fits =
        this.queue.length === 0 ||
        (this.queue.length < limits.queueResponsesMax - limits.queueControlReserve &&
          this.queuedBytes + item.bytes <= limits.queueBytesMax);
      if (this.closed || !fits) break;
      this.push(item);
      this.queuedBytes += item.bytes;
      accepted += 1;
    }
    return accepted;
  }

  /** Queues a control response (no events) if there is any room; false otherwise. */
  offerControl(fields: ControlFields): boolean {
    if (this.closed || this.queue.free === 0) return false;
    this.pushControl(fields);
    return true;
  }

  /** Forgets a watcher the hub cancelled (compacted history). */
  removeCancelled(watcher: Watcher): void {
    assert(this.watchers.get(watcher.id) === watcher, 'the watcher belongs to this stream');
    this.remove(watcher);
  }

  // -------------------------------------------------------------------------------------------

  private pushControl(fields: ControlFields): void {
    const response = controlResponse({ headerRevision: this.host.currentRevision(), ...fields });
    assert(response.events.length === 0, 'control responses carry no events');
    this.push({ response, bytes: 0, fragment: false });
  }

  private push(item: QueuedResponse): void {
    const wasEmpty = this.queue.length === 0 && this.fragments.length === 0;
    const pushed = this.queue.push(item);
    assert(pushed, 'callers check for room first');
    if (wasEmpty) this.onReadable?.();
  }

  private remove(watcher: Watcher): void {
    this.host.unregister(watcher);
    this.watchers.delete(watcher.id);
  }

  private checkOpen(): void {
    if (this.closed) throw new WatchError(WatchErrorCode.StreamClosed);
  }

  private validate(request: WatchCreateRequest): WatchError | null {
    const start = request.startRevision ?? 0;
    const id = request.watchId ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) {
      return new WatchError(WatchErrorCode.InvalidRequest, `start revision ${start}`);
    }
    if (!Number.isSafeInteger(id) || id < 0) {
      return new WatchError(WatchErrorCode.InvalidRequest, `watch id ${id}`);
    }
    if (isEmptyRange({ key: request.key, rangeEnd: request.rangeEnd ?? new Uint8Array(0) })) {
      return new WatchError(WatchErrorCode.EmptyRange);
    }
    if (id !== 0 && this.watchers.has(id)) return new WatchError(WatchErrorCode.DuplicateId);
    if (this.watchers.size >= this.host.limits.watchersMax) {
      return new WatchError(WatchErrorCode.TooManyWatchers);
    }
    return null;
  }

  /** etcd: 0 asks for the lowest unused id counting up from the last one handed out. */
  private allocateId(requested: number): number {
    if (requested !== 0) return requested;
    while (this.watchers.has(this.nextAutoId)) this.nextAutoId += 1;
    const id = this.nextAutoId;
    this.nextAutoId += 1;
    return id;
  }
}
