/**
 * etcd's Watch service: one bidirectional call per client stream, backed by one WatchStream of
 * the member's watch hub.
 *
 * Flow control, both ways:
 * - Out: responses are taken from the WatchStream only while the gRPC write buffer has room
 *   (`write()` returned true); otherwise we wait for 'drain'. Meanwhile the stream's bounded queue
 *   fills and the hub parks its watchers as victims / unsynced, reading history later: a slow
 *   client costs bounded memory and never blocks other streams.
 * - In: when the stream is backlogged (no room even for a create/cancel acknowledgement) the call
 *   is paused, and resumed once responses drain.
 *
 * As etcd: a client's half-close does not end the watch; an empty request is ignored; cancelling
 * an unknown watch id answers nothing; the call ends when the client cancels or disconnects, and
 * then the WatchStream is closed.
 */
import { WatchError, WatchErrorCode } from '../../kv/watch/errors.js';
import { WATCH_ID_NONE } from '../../kv/watch/limits.js';
import type { WatchStream } from '../../kv/watch/stream.js';
import { ServerError } from '../../server/errors.js';
import { TandemError } from '../../util/errors.js';
import { type ServiceContext, statusFor } from '../context.js';
import { watchCreateFromPb, watchResponseToPb } from '../convert.js';
import { type BidiCall, bidiHandler, type ServiceHandlers } from '../grpc/handlers.js';
import { goStatusText } from '../grpc/status.js';
import { WATCH_REQUESTS_PENDING_MAX } from '../limits.js';
import type { PbWatchRequest } from '../proto.js';
import { requiresLeader } from '../request-options.js';

const METHOD = 'Watch';
const BACKLOGGED: string = WatchErrorCode.StreamBacklogged;

type WatchCall = BidiCall<PbWatchRequest, unknown>;

class WatchSession {
  private readonly stream: WatchStream;
  private closed = false;
  private drainScheduled = false;
  /** The gRPC write buffer is full: wait for 'drain' before taking more responses. */
  private awaitingDrain = false;
  /** Reading requests is paused because the WatchStream is backlogged. */
  private readPaused = false;
  /** A create's permission check is running: requests wait behind it, in order. */
  private authChecking = false;
  /** Requests that arrived while paused (a few may be in flight when we pause). */
  private readonly pending: PbWatchRequest[] = [];
  /** Unsubscribes from the member's leader loss (calls opened with `hasleader: true`). */
  private stopLeaderWatch: () => void = () => {};

  constructor(
    private readonly ctx: ServiceContext,
    private readonly call: WatchCall,
  ) {
    // etcd's stream interceptor and monitorLeader for clientv3's WithRequireLeader.
    const requireLeader = requiresLeader(call.metadata);
    if (requireLeader && !ctx.backend.hasLeader()) {
      throw new ServerError('NO_LEADER', 'etcdserver: no leader');
    }
    this.stream = ctx.backend.openWatchStream(() => this.scheduleDrain());
    ctx.streams.add(this.end);
    if (requireLeader) {
      this.stopLeaderWatch = ctx.backend.onLeaderLost(() =>
        this.fail(new ServerError('NO_LEADER', 'etcdserver: no leader')),
      );
    }
    call.on('data', (request: PbWatchRequest) => this.onRequest(request));
    call.on('cancelled', () => this.close());
  }

  private onRequest(request: PbWatchRequest): void {
    if (this.closed) return;
    if (this.readPaused || this.authChecking) {
      this.pending.push(request);
      if (this.pending.length > WATCH_REQUESTS_PENDING_MAX) {
        // The client keeps writing without reading: end the call rather than buffer more.
        this.fail(new WatchError(WatchErrorCode.StreamBacklogged, 'too many pending requests'));
      }
      return;
    }
    this.dispatch(request);
  }

  /** False when requests after this one must wait (a create's permission check is running). */
  private dispatch(request: PbWatchRequest): boolean {
    if (request.requestUnion === 'createRequest' && this.ctx.auth.enabled()) {
      void this.checkThenCreate(request);
      return false;
    }
    return this.handle(request);
  }

  /**
   * etcd's isWatchPermitted: read on the watched range, as the caller, or the create is answered
   * created and canceled with the reason (requests after it wait, in order).
   */
  private async checkThenCreate(request: PbWatchRequest): Promise<void> {
    let create: ReturnType<typeof watchCreateFromPb>;
    try {
      create = watchCreateFromPb(request.createRequest!);
    } catch {
      return void this.handle(request); // refused as without auth
    }
    this.authChecking = true;
    this.call.pause();
    let reason: string | null = null;
    try {
      const who = await this.ctx.auth.credentials(this.call);
      this.ctx.auth.checkRange(who, create.key, create.rangeEnd ?? new Uint8Array(0));
    } catch (err) {
      // etcd's cancel_reason is the gRPC error's text (rpctypes.ErrGRPCPermissionDenied.Error()).
      reason = goStatusText(statusFor(this.ctx, METHOD, err));
    }
    this.authChecking = false;
    if (this.closed) return;
    if (reason === null) {
      if (!this.handle(request)) return;
    } else {
      const header = this.ctx.backend.header();
      this.call.write(
        watchResponseToPb(
          {
            watchId: WATCH_ID_NONE,
            headerRevision: header.revision,
            events: [],
            created: true,
            canceled: true,
            cancelReason: reason,
            compactRevision: 0,
            fragment: false,
          },
          header,
        ),
      );
    }
    while (this.pending.length > 0 && !this.readPaused && !this.authChecking && !this.closed) {
      if (!this.dispatch(this.pending.shift()!)) return;
    }
    if (!this.readPaused && !this.authChecking && !this.closed) this.call.resume();
  }

  /** False when the request must wait (the stream is backlogged); it is then kept pending. */
  private handle(request: PbWatchRequest): boolean {
    try {
      switch (request.requestUnion) {
        case 'createRequest':
          this.stream.watch(watchCreateFromPb(request.createRequest!));
          break;
        case 'cancelRequest':
          // An id that is not a safe integer matches no watcher: nothing to answer, as etcd.
          this.stream.cancel(Number(request.cancelRequest!.watchId));
          break;
        case 'progressRequest':
          this.stream.requestProgress();
          break;
        default:
          // etcd: "we probably should not shutdown the entire stream when receive an invalid
          // command", so an empty WatchRequest does nothing.
          break;
      }
    } catch (err) {
      if (err instanceof TandemError && err.code === BACKLOGGED) {
        this.pending.unshift(request);
        this.pause();
        return false;
      }
      this.fail(err);
      return false;
    }
    if (this.stream.backlogged) this.pause();
    return true;
  }

  private pause(): void {
    if (this.readPaused || this.closed) return;
    this.readPaused = true;
    this.call.pause();
  }

  private maybeResume(): void {
    if (!this.readPaused || this.authChecking || this.closed || this.stream.backlogged) return;
    this.readPaused = false;
    while (this.pending.length > 0 && !this.readPaused && !this.authChecking && !this.closed) {
      if (!this.dispatch(this.pending.shift()!)) return;
    }
    if (!this.readPaused && !this.authChecking && !this.closed) this.call.resume();
  }

  /** `onReadable` runs inside the hub; the drain happens after it returns. */
  private scheduleDrain(): void {
    if (this.drainScheduled || this.closed) return;
    this.drainScheduled = true;
    queueMicrotask(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    if (this.closed || this.awaitingDrain) return;
    try {
      for (;;) {
        const response = this.stream.next();
        if (response === undefined) break;
        const room = this.call.write(watchResponseToPb(response, this.ctx.backend.header()));
        if (!room) {
          this.awaitingDrain = true;
          this.call.once('drain', () => {
            this.awaitingDrain = false;
            this.drain();
          });
          break;
        }
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    this.maybeResume();
  }

  /** Ends the call with the status for `err` (the server is closing). */
  private readonly end = (err: unknown): void => this.fail(err);

  private fail(err: unknown): void {
    if (this.closed) return;
    const status = statusFor(this.ctx, METHOD, err);
    this.close();
    this.call.fail(status);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.streams.delete(this.end);
    this.stopLeaderWatch();
    this.pending.length = 0;
    this.stream.close();
  }
}

export function watchService(ctx: ServiceContext): ServiceHandlers {
  return {
    Watch: bidiHandler((call: WatchCall) => {
      try {
        new WatchSession(ctx, call);
      } catch (err) {
        call.fail(statusFor(ctx, METHOD, err));
      }
    }),
  };
}
