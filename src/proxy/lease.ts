/**
 * Lease keep-alives through the gateway, once per lease upstream: every client LeaseKeepAlive
 * stream's requests for lease L wait on one upstream request for L (on one upstream stream to
 * the leader), and an answer younger than KEEPALIVE_REUSE_MS answers new requests at once. So a
 * thousand clients sharing a lease cost the leader one renewal per reuse window, not a thousand.
 * The upstream stream follows the leader: when it fails, the requests in flight are sent again
 * on a new one.
 */
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { BidiCall } from '../api/grpc/handlers.js';
import type { Router } from '../routing/router.js';
import type { TopologyPoller } from './topology.js';
import { GrpcMetadata, type Upstreams } from './upstream.js';

/** An upstream answer this young answers a client's keep-alive without asking again. */
export const KEEPALIVE_REUSE_MS = 500;
/** Leases tracked at most; idle ones are dropped first. */
export const LEASES_TRACKED_MAX = 100_000;
/** A lease nobody kept alive for this long is forgotten. */
export const LEASE_IDLE_MS = 60_000;
export const KEEPALIVE_REOPEN_BACKOFF_MS = 100;

interface PbKeepAliveResponse {
  readonly header: unknown;
  readonly ID: string;
  readonly TTL: string;
}

interface LeaseEntry {
  waiters: Array<(r: PbKeepAliveResponse) => void>;
  inFlight: boolean;
  last: PbKeepAliveResponse | null;
  lastAtMs: number;
  usedAtMs: number;
}

export class KeepAliveHub {
  private readonly leases = new Map<string, LeaseEntry>();
  private upstream: ClientDuplexStream<unknown, unknown> | null = null;
  private reopenTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  upstreamRequests = 0;
  clientRequests = 0;
  reopens = 0;

  constructor(
    private readonly router: Router,
    private readonly upstreams: Upstreams,
    private readonly poller: TopologyPoller | null,
  ) {}

  get trackedLeases(): number {
    return this.leases.size;
  }

  /** A client's LeaseKeepAlive stream. */
  serve(call: BidiCall<unknown, unknown>): void {
    let open = true;
    call.on('data', (request) => {
      const id = String((request as { ID: string }).ID);
      this.keepAlive(id).then((r) => {
        if (open) call.write(r);
      });
    });
    call.on('end', () => {
      open = false;
      call.end();
    });
    call.on('cancelled', () => {
      open = false;
    });
  }

  keepAlive(id: string): Promise<PbKeepAliveResponse> {
    this.clientRequests++;
    const now = performance.now();
    let e = this.leases.get(id);
    if (e === undefined) {
      if (this.leases.size >= LEASES_TRACKED_MAX) this.dropIdle(now);
      e = { waiters: [], inFlight: false, last: null, lastAtMs: 0, usedAtMs: now };
      this.leases.set(id, e);
    }
    e.usedAtMs = now;
    if (e.last !== null && now - e.lastAtMs < KEEPALIVE_REUSE_MS) return Promise.resolve(e.last);
    const entry = e;
    return new Promise((resolve) => {
      entry.waiters.push(resolve);
      if (!entry.inFlight) {
        entry.inFlight = true;
        this.send(id);
      }
    });
  }

  close(): void {
    this.closed = true;
    if (this.reopenTimer !== null) clearTimeout(this.reopenTimer);
    this.upstream?.cancel();
    this.upstream = null;
  }

  private send(id: string): void {
    const s = this.stream();
    if (s === null) return; // sent when a stream opens
    this.upstreamRequests++;
    s.write({ ID: id });
  }

  private stream(): ClientDuplexStream<unknown, unknown> | null {
    if (this.upstream !== null || this.closed) return this.upstream;
    const leader = this.router.pickLeader(performance.now());
    if (leader === null) {
      this.reopenLater();
      return null;
    }
    const s = this.upstreams.bidi(leader.clientUrl, 'lease', 'LeaseKeepAlive', new GrpcMetadata());
    this.upstream = s;
    s.on('data', (r: PbKeepAliveResponse) => {
      const e = this.leases.get(String(r.ID));
      if (e === undefined) return;
      e.inFlight = false;
      const gone = Number(r.TTL) <= 0;
      e.last = gone ? null : r;
      e.lastAtMs = performance.now();
      for (const w of e.waiters.splice(0)) w(r);
      if (gone) this.leases.delete(String(r.ID));
    });
    const fail = (): void => {
      if (this.upstream !== s) return;
      this.upstream = null;
      s.removeAllListeners();
      s.on('error', () => {});
      s.cancel();
      this.reopens++;
      this.router.forgetLeader(leader.id);
      void this.poller?.refresh();
      this.reopenLater();
    };
    s.on('error', fail);
    s.on('end', fail);
    return s;
  }

  private reopenLater(): void {
    if (this.reopenTimer !== null || this.closed) return;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      for (const [id, e] of this.leases) if (e.inFlight) this.send(id);
    }, KEEPALIVE_REOPEN_BACKOFF_MS);
    this.reopenTimer.unref();
  }

  private dropIdle(now: number): void {
    for (const [id, e] of this.leases) {
      if (!e.inFlight && now - e.usedAtMs > LEASE_IDLE_MS) this.leases.delete(id);
    }
    if (this.leases.size >= LEASES_TRACKED_MAX) {
      const oldest = this.leases.keys().next().value;
      if (oldest !== undefined) this.leases.delete(oldest);
    }
  }
}
