/**
 * One unary request routed by the Router (src/routing/) to members: to the leader, or to the
 * best member for a read, hedged; used by `tandem gateway` and by the TypeScript client.
 *
 * Retries only what is safe: a request is sent to another member when the first certainly did
 * not receive it (no connection), or when it is idempotent (reads) and the member failed
 * (connection lost, per-attempt deadline). An error the member answers is the request's answer.
 */
import { status as grpcStatus } from '@grpc/grpc-js';
import type { ServiceKey } from '../api/proto.js';
import type { Attempt, MemberDescription, Router } from '../routing/router.js';
import type { TopologyPoller } from './topology.js';
import { GrpcMetadata, type PendingCall, type UpstreamError, type Upstreams } from './upstream.js';

/** Members one request is sent to at most (hedge and retries included). */
export const ATTEMPTS_MAX = 3;
/** A read attempt not answered in this long is given up and retried elsewhere. */
export const READ_ATTEMPT_TIMEOUT_MS = 2_000;
/** A request's overall deadline when the caller gives none (etcd's request timeout is 5 s). */
export const REQUEST_TIMEOUT_MS_DEFAULT = 10_000;

export type Route = 'leader' | 'read';

export interface DispatchRequest {
  readonly service: ServiceKey;
  readonly method: string;
  readonly request: unknown;
  readonly metadata: GrpcMetadata;
  readonly route: Route;
  /** Safe to send again after a member failed with the request out (reads). */
  readonly idempotent: boolean;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Error messages by which a member says the leader moved: look again at once. */
const LEADER_HINT = /leader changed|no leader|not leader|not the leader/;

export function upstreamError(code: number, details: string): UpstreamError {
  return { code, details, kind: 'answer' };
}

/** How often ejected members are looked at for a probe that is due. */
export const PROBE_TICK_MS = 100;
/** A probe not answered in this long failed (the member stays out, its ejection doubled). */
export const PROBE_TIMEOUT_MS = 1_000;

/**
 * Probes ejected members whose time came (a Maintenance.Status call each) until the returned
 * function is called: a probe answered quickly enough readmits its member. Without it an
 * ejected member would never be picked again (only 'ok' members are), so every user of a
 * Router runs one.
 */
export function startProbes(
  router: Router,
  upstreams: UnaryUpstreams,
  nowMs: () => number = () => performance.now(),
): () => void {
  const timer = setInterval(() => {
    for (const m of router.dueProbes(nowMs())) {
      const attempt = router.begin(m.id, nowMs(), true);
      upstreams
        .unary(m.clientUrl, 'maintenance', 'Status', {}, new GrpcMetadata(), PROBE_TIMEOUT_MS)
        .done.then(
          () => router.end(attempt, 'ok', nowMs()),
          // An error the member answered is an answer: it is reachable and serving.
          (e: UpstreamError) => router.end(attempt, e.kind === 'answer' ? 'ok' : 'failed', nowMs()),
        );
    }
  }, PROBE_TICK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** What the Dispatcher sends with: upstream.ts's decoded calls or passthrough.ts's raw ones. */
export type UnaryUpstreams = Pick<Upstreams, 'unary'>;

export class Dispatcher {
  constructor(
    private readonly router: Router,
    private readonly upstreams: UnaryUpstreams,
    private readonly poller: TopologyPoller | null,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  call(req: DispatchRequest): Promise<unknown> {
    return req.route === 'read' ? this.read(req) : this.toLeader(req);
  }

  private send(m: MemberDescription, req: DispatchRequest, timeoutMs: number): PendingCall {
    return this.upstreams.unary(
      m.clientUrl,
      req.service,
      req.method,
      req.request,
      req.metadata,
      Math.max(1, timeoutMs),
    );
  }

  private memberFailed(m: MemberDescription): void {
    if (this.router.leader?.id === m.id) this.router.forgetLeader(m.id);
    void this.poller?.refresh();
  }

  private async toLeader(req: DispatchRequest): Promise<unknown> {
    const deadline = this.nowMs() + (req.timeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT);
    const tried = new Set<string>();
    let lastError: UpstreamError | null = null;
    for (let i = 0; i < ATTEMPTS_MAX; i++) {
      let m = this.router.pickLeader(this.nowMs(), tried);
      if (m === null && this.poller !== null && this.nowMs() < deadline) {
        await this.poller.refresh();
        m = this.router.pickLeader(this.nowMs(), tried);
      }
      if (m === null) break;
      tried.add(m.id);
      const attempt = this.router.begin(m.id, this.nowMs());
      const pending = this.send(m, req, deadline - this.nowMs());
      const cancel = (): void => pending.cancel();
      req.signal?.addEventListener('abort', cancel, { once: true });
      try {
        const response = await pending.done;
        this.router.end(attempt, 'ok', this.nowMs());
        return response;
      } catch (error) {
        const e = error as UpstreamError;
        if (req.signal?.aborted) {
          this.router.end(attempt, 'abandoned', this.nowMs());
          throw e;
        }
        if (e.kind === 'answer') {
          this.router.end(attempt, 'ok', this.nowMs());
          if (LEADER_HINT.test(e.details)) void this.poller?.refresh();
          throw e;
        }
        this.router.end(attempt, 'failed', this.nowMs());
        this.memberFailed(m);
        lastError = e;
        if (e.kind === 'lost' && !req.idempotent) throw e; // it may have applied
        if (this.nowMs() >= deadline) break;
      } finally {
        req.signal?.removeEventListener('abort', cancel);
      }
    }
    throw (
      lastError ?? upstreamError(grpcStatus.UNAVAILABLE, 'tandem gateway: no member to send to')
    );
  }

  private read(req: DispatchRequest): Promise<unknown> {
    const router = this.router;
    const now = this.nowMs;
    const deadline = now() + (req.timeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT);
    const tried = new Set<string>();
    const live = new Map<Attempt, PendingCall>();
    let lastError: UpstreamError | null = null;
    let finished = false;
    let attempts = 0;
    let hedgeTimer: ReturnType<typeof setTimeout> | null = null;
    return new Promise<unknown>((resolve, reject) => {
      const finish = (settle: () => void, answered = false): void => {
        if (finished) return;
        finished = true;
        if (hedgeTimer !== null) clearTimeout(hedgeTimer);
        req.signal?.removeEventListener('abort', onAbort);
        // Attempts still out when another answered were outrun (slow); else cancelled.
        for (const [attempt, pending] of live) {
          router.end(attempt, answered ? 'outrun' : 'abandoned', now());
          pending.cancel();
        }
        live.clear();
        settle();
      };
      const fail = (): void => {
        const e =
          lastError ??
          upstreamError(grpcStatus.UNAVAILABLE, 'tandem gateway: no member to send to');
        finish(() => reject(e));
      };
      const launch = (hedge: boolean): boolean => {
        const m = router.pickRead(now(), tried);
        if (m === null) return false;
        tried.add(m.id);
        attempts++;
        const attempt = router.begin(m.id, now());
        const pending = this.send(m, req, Math.min(READ_ATTEMPT_TIMEOUT_MS, deadline - now()));
        live.set(attempt, pending);
        pending.done.then(
          (response) => {
            if (finished) return;
            live.delete(attempt);
            router.end(attempt, 'ok', now());
            if (hedge) router.noteHedgeWon();
            finish(() => resolve(response), true);
          },
          (error: UpstreamError) => {
            if (finished) return;
            live.delete(attempt);
            if (error.kind === 'answer') {
              router.end(attempt, 'ok', now());
              finish(() => reject(error), true);
              return;
            }
            router.end(attempt, 'failed', now());
            this.memberFailed(m);
            lastError = error;
            if (live.size > 0) return; // the other attempt may still answer
            if (attempts >= ATTEMPTS_MAX || now() >= deadline || !launch(false)) fail();
          },
        );
        return true;
      };
      const onAbort = (): void =>
        finish(() => reject(upstreamError(grpcStatus.CANCELLED, 'tandem gateway: cancelled')));
      req.signal?.addEventListener('abort', onAbort, { once: true });
      if (!launch(false)) {
        fail();
        return;
      }
      if (req.idempotent) {
        hedgeTimer = setTimeout(() => {
          hedgeTimer = null;
          if (finished || attempts >= ATTEMPTS_MAX) return;
          if (router.tryHedge()) launch(true);
        }, router.hedgeDelayMs());
      }
    });
  }
}
