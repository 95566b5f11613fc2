/**
 * Watches through the gateway. A ResumableWatch is one upstream watch that survives its member:
 * when the stream fails it is opened again on another member from the first revision not fully
 * delivered, and what was already delivered is dropped, so its consumer sees every event once:
 *
 *   doneRev     every event at a revision <= doneRev was delivered
 *   partialRev  the last revision delivered from (events of one revision may span responses),
 *   partialKeys with the keys already delivered at it
 *   resume at doneRev + 1; drop an event at rev <= doneRev, or at partialRev with a key in
 *   partialKeys (etcd never has two events for one key in one revision)
 *
 * A WatchHub shares upstream watches among client watches: client watches from "now"
 * (start_revision 0) on the same key, range end, filters and prev_kv flag share one upstream
 * watch; one with a start revision gets its own. Each client stream keeps its own watch ids.
 */
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { BidiCall } from '../api/grpc/handlers.js';
import { Status } from '../api/grpc/status.js';
import { REQUIRE_LEADER_KEY } from '../api/request-options.js';
import type { Router } from '../routing/router.js';
import type { TopologyPoller } from './topology.js';
import { GrpcMetadata, type Upstreams } from './upstream.js';

/** Upstream reopen attempts in a row before the watch's clients are told it failed. */
export const WATCH_RESUMES_IN_ROW_MAX = 100;
export const WATCH_RESUME_BACKOFF_MS = 100;
/** Client watches per client stream, and shared upstream watches per gateway, at most. */
export const CLIENT_WATCHES_PER_STREAM_MAX = 10_000;
export const UPSTREAM_WATCHES_MAX = 100_000;

export interface WatchSpec {
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
  /** 0: from now. */
  readonly startRevision: number;
  readonly prevKv: boolean;
  readonly filters: readonly number[];
  readonly progressNotify: boolean;
}

/** A response header as grpc-js decodes it (64-bit fields as strings). */
export interface PbHeader {
  readonly clusterId: string;
  readonly memberId: string;
  readonly revision: string;
  readonly raftTerm: string;
}

export interface PbEventIn {
  readonly type: number;
  readonly kv: { readonly key: Buffer; readonly modRevision: string };
  readonly prevKv?: unknown;
}

interface PbWatchResponse {
  readonly header: PbHeader;
  readonly watchId: string;
  readonly created: boolean;
  readonly canceled: boolean;
  readonly compactRevision: string;
  readonly cancelReason: string;
  readonly events: readonly PbEventIn[];
}

export interface ResumableWatchEvents {
  /** The first upstream created: events follow from `revision` + 1 (or the start revision). */
  created(header: PbHeader): void;
  events(header: PbHeader, events: readonly PbEventIn[]): void;
  progress(header: PbHeader): void;
  /** The watch ended for good: compacted (compactRevision > 0) or refused. */
  canceled(header: PbHeader | null, reason: string, compactRevision: number): void;
}

export interface WatchDeps {
  readonly router: Router;
  readonly upstreams: Upstreams;
  readonly poller: TopologyPoller | null;
  readonly onResume?: () => void;
}

export class ResumableWatch {
  doneRev = 0;
  private partialRev = 0;
  private readonly partialKeys = new Set<string>();
  private createdOnce = false;
  private stream: ClientDuplexStream<unknown, unknown> | null = null;
  private memberId: string | null = null;
  private closed = false;
  private failuresInRow = 0;
  resumes = 0;

  constructor(
    readonly spec: WatchSpec,
    private readonly deps: WatchDeps,
    private readonly on: ResumableWatchEvents,
  ) {
    if (spec.startRevision > 0) this.doneRev = spec.startRevision - 1;
  }

  start(): void {
    this.open(new Set());
  }

  close(): void {
    this.closed = true;
    const s = this.stream;
    this.stream = null;
    if (s !== null) {
      s.removeAllListeners();
      s.on('error', () => {});
      s.cancel();
    }
  }

  /** The member the upstream watch is on now (null between members). */
  get member(): string | null {
    return this.memberId;
  }

  private open(avoid: ReadonlySet<string>): void {
    if (this.closed) return;
    const { router, upstreams } = this.deps;
    const m = router.pickRead(performance.now(), avoid) ?? router.pickRead(performance.now());
    if (m === null) {
      this.retryLater(avoid);
      return;
    }
    const metadata = new GrpcMetadata();
    // A member cut off from the leader ends the stream, and the watch moves (etcd's
    // WithRequireLeader, as etcdctl watch asks for).
    metadata.set(REQUIRE_LEADER_KEY, 'true');
    const stream = upstreams.bidi(m.clientUrl, 'watch', 'Watch', metadata);
    this.stream = stream;
    this.memberId = m.id;
    const start = this.createdOnce || this.spec.startRevision > 0 ? this.doneRev + 1 : 0;
    stream.write({
      createRequest: {
        key: this.spec.key,
        rangeEnd: this.spec.rangeEnd,
        startRevision: String(start),
        progressNotify: this.spec.progressNotify,
        filters: [...this.spec.filters],
        prevKv: this.spec.prevKv,
        watchId: '0',
        fragment: false,
      },
    });
    let failed = false;
    const fail = (): void => {
      if (failed || this.closed || this.stream !== stream) return;
      failed = true;
      this.stream = null;
      this.memberId = null;
      stream.removeAllListeners();
      stream.on('error', () => {});
      stream.cancel();
      this.failuresInRow++;
      this.resumes++;
      this.deps.onResume?.();
      void this.deps.poller?.refresh();
      if (this.failuresInRow > WATCH_RESUMES_IN_ROW_MAX) {
        this.closed = true;
        this.on.canceled(null, 'tandem gateway: no member could resume the watch', 0);
        return;
      }
      this.retryLater(new Set([m.id]));
    };
    stream.on('data', (r: PbWatchResponse) => {
      if (this.stream !== stream) return;
      this.failuresInRow = 0;
      this.receive(r, fail);
    });
    stream.on('error', fail);
    stream.on('end', fail);
  }

  private retryLater(avoid: ReadonlySet<string>): void {
    const t = setTimeout(
      () => this.open(avoid),
      this.failuresInRow <= 1 ? 0 : WATCH_RESUME_BACKOFF_MS,
    );
    t.unref();
  }

  private receive(r: PbWatchResponse, fail: () => void): void {
    const headerRev = Number(r.header?.revision ?? 0);
    if (r.canceled) {
      const compact = Number(r.compactRevision);
      if (compact > 0 || r.cancelReason !== '') {
        this.closed = true;
        this.stream?.cancel();
        this.on.canceled(r.header, r.cancelReason, compact);
      } else fail();
      return;
    }
    if (r.created) {
      if (!this.createdOnce) {
        this.createdOnce = true;
        if (this.spec.startRevision === 0) this.doneRev = Math.max(this.doneRev, headerRev);
        this.on.created(r.header);
      }
      return;
    }
    if (r.events.length === 0) {
      // Progress: every event up to the header's revision was sent.
      this.noteDone(headerRev);
      this.on.progress(r.header);
      return;
    }
    const fresh: PbEventIn[] = [];
    for (const ev of r.events) {
      const rev = Number(ev.kv.modRevision);
      if (rev <= this.doneRev) continue;
      const key = ev.kv.key.toString('latin1');
      if (rev === this.partialRev) {
        if (this.partialKeys.has(key)) continue;
      } else if (rev > this.partialRev) {
        // Revisions come in order: everything before this one is complete.
        this.doneRev = Math.max(this.doneRev, rev - 1);
        this.partialRev = rev;
        this.partialKeys.clear();
      }
      this.partialKeys.add(key);
      fresh.push(ev);
    }
    if (fresh.length > 0) this.on.events(r.header, fresh);
  }

  private noteDone(rev: number): void {
    if (rev <= this.doneRev) return;
    this.doneRev = rev;
    if (this.partialRev <= rev) {
      this.partialRev = 0;
      this.partialKeys.clear();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The hub: client watch streams on shared upstream watches.

interface ClientWatch {
  readonly stream: ClientStream;
  readonly id: string;
  readonly wantsProgress: boolean;
  readonly shared: Shared;
}

interface Shared {
  readonly key: string | null; // null: not shared (a start revision)
  readonly watch: ResumableWatch;
  readonly clients: Set<ClientWatch>;
  created: PbHeader | null;
  readonly waiting: ClientWatch[];
}

interface ClientStream {
  readonly call: BidiCall<unknown, unknown>;
  readonly watches: Map<string, ClientWatch>;
  nextId: bigint;
}

interface PbWatchRequestIn {
  readonly requestUnion?: 'createRequest' | 'cancelRequest' | 'progressRequest';
  readonly createRequest?: {
    readonly key: Buffer;
    readonly rangeEnd: Buffer;
    readonly startRevision: string;
    readonly progressNotify: boolean;
    readonly filters: readonly number[];
    readonly prevKv: boolean;
    readonly watchId: string;
  };
  readonly cancelRequest?: { readonly watchId: string };
}

export class WatchHub {
  private readonly shared = new Map<string, Shared>();
  /** Every open upstream watch, shared or not. */
  private readonly all = new Set<ResumableWatch>();
  private upstreamCount = 0;
  clientWatches = 0;
  resumes = 0;

  constructor(private readonly deps: WatchDeps) {}

  get upstreamWatches(): number {
    return this.upstreamCount;
  }

  get sharedWatches(): number {
    return this.shared.size;
  }

  /** Upstream watches per member id (hex), for /status. */
  upstreamMembers(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const w of this.all) {
      const m = w.member;
      if (m !== null) out[m] = (out[m] ?? 0) + 1;
    }
    return out;
  }

  /** A client's Watch stream. */
  serve(call: BidiCall<unknown, unknown>): void {
    const stream: ClientStream = { call, watches: new Map(), nextId: 0n };
    call.on('data', (request) => this.request(stream, request as PbWatchRequestIn));
    const endAll = (): void => {
      for (const w of [...stream.watches.values()]) this.remove(w);
    };
    call.on('end', () => {
      endAll();
      call.end();
    });
    call.on('cancelled', endAll);
  }

  close(): void {
    for (const w of this.all) w.close();
    this.all.clear();
    this.shared.clear();
  }

  private request(stream: ClientStream, r: PbWatchRequestIn): void {
    if (r.createRequest !== undefined && r.requestUnion !== 'cancelRequest') {
      this.create(stream, r.createRequest);
    } else if (r.cancelRequest !== undefined) {
      const w = stream.watches.get(String(r.cancelRequest.watchId));
      if (w !== undefined) this.remove(w);
      stream.call.write({
        header: w?.shared.created ?? undefined,
        watchId: String(r.cancelRequest.watchId),
        canceled: true,
      });
    } else if (r.requestUnion === 'progressRequest') {
      // Progress for the whole stream: the lowest revision all its watches are complete to.
      let rev = Number.POSITIVE_INFINITY;
      let header: PbHeader | null = null;
      for (const w of stream.watches.values()) {
        rev = Math.min(rev, w.shared.watch.doneRev);
        header ??= w.shared.created;
      }
      if (header !== null && Number.isFinite(rev)) {
        stream.call.write({ header: { ...header, revision: String(rev) }, watchId: '-1' });
      }
    }
  }

  private create(stream: ClientStream, c: NonNullable<PbWatchRequestIn['createRequest']>): void {
    let id = String(c.watchId ?? '0');
    if (id === '0') {
      while (stream.watches.has(String(stream.nextId))) stream.nextId++;
      id = String(stream.nextId++);
    }
    if (stream.watches.has(id) || stream.watches.size >= CLIENT_WATCHES_PER_STREAM_MAX) {
      stream.call.fail({
        code: Status.INVALID_ARGUMENT,
        details: stream.watches.has(id)
          ? 'etcdserver: duplicate watch id'
          : `tandem gateway: more than ${CLIENT_WATCHES_PER_STREAM_MAX} watches on one stream`,
      });
      return;
    }
    const spec: WatchSpec = {
      key: Buffer.from(c.key),
      rangeEnd: Buffer.from(c.rangeEnd),
      startRevision: Number(c.startRevision ?? 0),
      prevKv: c.prevKv === true,
      filters: [...(c.filters ?? [])].sort(),
      progressNotify: true,
    };
    const shareKey =
      spec.startRevision === 0
        ? `${spec.key.toString('hex')}|${spec.rangeEnd.toString('hex')}|${spec.prevKv}|${spec.filters.join(',')}`
        : null;
    let shared = shareKey === null ? undefined : this.shared.get(shareKey);
    if (shared === undefined) {
      if (this.upstreamCount >= UPSTREAM_WATCHES_MAX) {
        stream.call.fail({
          code: Status.RESOURCE_EXHAUSTED,
          details: 'tandem gateway: too many watches',
        });
        return;
      }
      shared = this.newShared(shareKey, spec);
    }
    const w: ClientWatch = { stream, id, wantsProgress: c.progressNotify === true, shared };
    stream.watches.set(id, w);
    this.clientWatches++;
    if (shared.created === null) shared.waiting.push(w);
    else {
      shared.clients.add(w);
      stream.call.write({
        header: { ...shared.created, revision: String(shared.watch.doneRev) },
        watchId: id,
        created: true,
      });
    }
  }

  private newShared(key: string | null, spec: WatchSpec): Shared {
    const s: Shared = {
      key,
      clients: new Set(),
      created: null,
      waiting: [],
      watch: new ResumableWatch(
        spec,
        { ...this.deps, onResume: () => this.resumes++ },
        {
          created: (header) => {
            s.created = header;
            for (const w of s.waiting.splice(0)) {
              if (!w.stream.watches.has(w.id)) continue;
              s.clients.add(w);
              w.stream.call.write({ header, watchId: w.id, created: true });
            }
          },
          events: (header, events) => {
            for (const w of s.clients) w.stream.call.write({ header, watchId: w.id, events });
          },
          progress: (header) => {
            for (const w of s.clients) {
              if (w.wantsProgress) w.stream.call.write({ header, watchId: w.id, events: [] });
            }
          },
          canceled: (header, reason, compactRevision) => {
            for (const w of [...s.clients, ...s.waiting]) {
              w.stream.call.write({
                header: header ?? s.created ?? undefined,
                watchId: w.id,
                canceled: true,
                compactRevision: String(compactRevision),
                cancelReason: reason,
                created: !s.clients.has(w),
              });
              w.stream.watches.delete(w.id);
              this.clientWatches--;
            }
            s.clients.clear();
            s.waiting.length = 0;
            this.dropShared(s);
          },
        },
      ),
    };
    if (key !== null) this.shared.set(key, s);
    this.all.add(s.watch);
    this.upstreamCount++;
    s.watch.start();
    return s;
  }

  private remove(w: ClientWatch): void {
    if (!w.stream.watches.delete(w.id)) return;
    this.clientWatches--;
    const s = w.shared;
    s.clients.delete(w);
    const i = s.waiting.indexOf(w);
    if (i >= 0) s.waiting.splice(i, 1);
    if (s.clients.size === 0 && s.waiting.length === 0) {
      s.watch.close();
      this.dropShared(s);
    }
  }

  private dropShared(s: Shared): void {
    if (s.key !== null && this.shared.get(s.key) === s) this.shared.delete(s.key);
    this.all.delete(s.watch);
    this.upstreamCount--;
  }
}
