/**
 * `TcpTransport`: the production `Network`. Listens for peers (TCP, or mutual TLS), keeps one
 * outbound connection per peer (see peer.ts for queueing, batching, failover and backoff) and
 * delivers inbound messages and reachability reports to the member.
 *
 *   member ──send()──► Peer ring ──flush per turn──► socket ══frames══► InboundConnection
 *          ◄─onMessage── deliver ◄──────────────────────────────────────── (decode, check)
 *          ◄─onReport─── report ring ◄── link lost / drops / snapshot status
 *
 * Connections are one-directional for Raft traffic: each member dials each peer, so two members
 * have two connections between them. This keeps the sender in control of its queue and its
 * link choice, and a member never has to guess which of two crossing dials to keep.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type {
  MessageHandler,
  Network,
  PeerAddress,
  PeerReport,
  PeerReportHandler,
} from '../io/network.js';
import { type Message, MessageType, NONE, type NodeId } from '../raft/types.js';
import { assert, assertUint } from '../util/assert.js';
import { Prng, type Random } from '../util/prng.js';
import { formatAddress, type HostPort } from './address.js';
import type { PeerTraffic, TransportContext } from './context.js';
import { TransportError } from './errors.js';
import { FaultInjector } from './faults.js';
import {
  answerFetch,
  FETCH_NOT_SERVING,
  type FetchRequest,
  type FetchResponse,
  type FetchSource,
} from './fetch-protocol.js';
import type { ClusterSecret } from './handshake.js';
import { InboundConnection } from './inbound.js';
import {
  PEER_TRAFFIC_MAX,
  REPORTS_PENDING_MAX,
  resolveLimits,
  type TransportLimits,
} from './limits.js';
import { SILENT_LOGGER, type TransportLogger } from './logger.js';
import { Peer, type PeerStatus } from './peer.js';
import { FixedRing } from './ring.js';
import { REAL_TIMERS, type TransportTimers } from './timers.js';
import { certificateNames, memberCertificateRefusal, type TransportTlsOptions } from './tls.js';

export interface TcpTransportOptions {
  readonly id: NodeId;
  /** Peers of another cluster are refused at the handshake. */
  readonly clusterId: string;
  /** The cluster secret every member holds (handshake.ts: `clusterSecret(text)`). */
  readonly secret: ClusterSecret;
  /**
   * Which authenticated ids may connect (the member's registry); default: every id that holds
   * the secret. Asked at each HELLO, before the challenge.
   */
  readonly admitPeer?: (id: NodeId) => boolean;
  /** Where to accept peers; port 0 lets the OS choose (see `addresses()` after `listen()`). */
  readonly listen: readonly HostPort[];
  readonly tls?: TransportTlsOptions;
  /**
   * With `tls`: binds peer certificates to member names (tls.ts): the members' names by id, read
   * at each handshake. Absent: any certificate of the CA may speak as any member.
   */
  readonly memberNames?: () => ReadonlyMap<NodeId, string>;
  /** Lower limits than the defaults (tests); never higher. */
  readonly limits?: Partial<TransportLimits>;
  readonly logger?: TransportLogger;
  readonly timers?: TransportTimers;
  /** Jitter for reconnect backoff and fault rules; seeded from `id` when absent. */
  readonly random?: Random;
  /** Test mode only: enables `faults` (drop and delay rules per peer). */
  readonly faultInjection?: boolean;
  /** Sees each timed round trip to a peer (PING/PONG every `pingIntervalMs`): metrics. */
  readonly onRoundTrip?: (peer: NodeId, seconds: number) => void;
}

export interface TransportStatus {
  readonly id: NodeId;
  readonly listening: readonly PeerAddress[];
  readonly inboundConnections: number;
  /** Inbound connections closed at accept: over a connection or handshake limit. */
  readonly refusedConnections: number;
  /** Snapshot bytes being received now (allocated), against `snapshotReceiveBudgetBytes`. */
  readonly snapshotReceiveBytes: number;
  readonly droppedUnknownPeer: number;
  readonly droppedReports: number;
  readonly peers: readonly PeerStatus[];
}

interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export class TcpTransport implements Network, TransportContext {
  readonly localId: NodeId;
  readonly clusterId: string;
  readonly secret: ClusterSecret;
  readonly limits: TransportLimits;
  readonly logger: TransportLogger;
  readonly timers: TransportTimers;
  readonly random: Random;
  readonly connectEvent: 'connect' | 'secureConnect';
  /** Fault rules; null unless built with `faultInjection: true`. */
  readonly faults: FaultInjector | null;

  private readonly listenOn: readonly HostPort[];
  private readonly tlsMaterial: TlsMaterial | null;
  private readonly memberNames: (() => ReadonlyMap<NodeId, string>) | null;
  private readonly servers: net.Server[] = [];
  private readonly inbound = new Set<InboundConnection>();
  private readonly peers = new Map<NodeId, Peer>();
  private readonly reports = new FixedRing<PeerReport>(REPORTS_PENDING_MAX);
  private reportsScheduled = false;
  private messageHandler: MessageHandler | null = null;
  private fetchSource: (() => FetchSource) | null = null;
  private reportHandler: PeerReportHandler | null = null;
  private readonly admitPeer: ((id: NodeId) => boolean) | null;
  private snapshotIdLast = 0;
  private snapshotReceiveBytes = 0;
  private refusedConnections = 0;
  private droppedUnknownPeer = 0;
  private droppedReports = 0;
  /** Bytes to and from each peer, at most PEER_TRAFFIC_MAX of them (see `traffic`). */
  private readonly trafficByPeer = new Map<NodeId, PeerTraffic>();
  /** Where the bytes of peers past PEER_TRAFFIC_MAX go: counted nowhere that is reported. */
  private readonly uncounted: PeerTraffic = { sentBytes: 0, receivedBytes: 0 };
  private readonly onRoundTrip: ((peer: NodeId, seconds: number) => void) | null;
  private closed = false;
  private readonly drainReportsBound = (): void => this.drainReports();

  constructor(options: TcpTransportOptions) {
    assertUint(options.id, 'transport id');
    if (options.id === NONE) throw new TransportError('TRANSPORT_CONFIG', 'node id 0 is reserved');
    if (options.clusterId.length === 0) {
      throw new TransportError('TRANSPORT_CONFIG', 'clusterId must not be empty');
    }
    if (options.listen.length === 0) {
      throw new TransportError('TRANSPORT_CONFIG', 'at least one listen address is required');
    }
    this.localId = options.id;
    this.clusterId = options.clusterId;
    this.secret = options.secret;
    this.admitPeer = options.admitPeer ?? null;
    this.limits = resolveLimits(options.limits);
    this.logger = options.logger ?? SILENT_LOGGER;
    this.timers = options.timers ?? REAL_TIMERS;
    this.random = options.random ?? new Prng(options.id);
    this.listenOn = options.listen;
    this.onRoundTrip = options.onRoundTrip ?? null;
    this.tlsMaterial = options.tls === undefined ? null : TcpTransport.readTls(options.tls);
    this.connectEvent = this.tlsMaterial === null ? 'connect' : 'secureConnect';
    this.memberNames = options.memberNames ?? null;
    this.faults =
      options.faultInjection === true
        ? new FaultInjector(this.timers, this.random, (to, m) => this.peers.get(to)?.enqueue(m))
        : null;
  }

  private static readTls(options: TransportTlsOptions): TlsMaterial {
    try {
      return {
        ca: readFileSync(options.caFile),
        cert: readFileSync(options.certFile),
        key: readFileSync(options.keyFile),
      };
    } catch (cause) {
      throw new TransportError('TRANSPORT_CONFIG', 'cannot read peer TLS files', { cause });
    }
  }

  /** Starts every listener; resolves with the bound addresses (ports chosen when 0). */
  async listen(): Promise<PeerAddress[]> {
    for (const target of this.listenOn) {
      const server = this.createServer();
      this.servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: target.host, port: target.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err: Error) => {
        this.logger.error({ err: err.message }, 'peer listener error');
      });
    }
    return this.addresses();
  }

  addresses(): PeerAddress[] {
    const result: PeerAddress[] = [];
    for (const server of this.servers) {
      const a = server.address();
      if (a !== null && typeof a === 'object') result.push(formatAddress(a.address, a.port));
    }
    return result;
  }

  private createServer(): net.Server {
    const material = this.tlsMaterial;
    if (material === null) {
      return net.createServer((socket) => this.accept(socket));
    }
    const server = tls.createServer(
      {
        ...material,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
      },
      (socket) => this.accept(socket),
    );
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      this.logger.error(
        { remote: `${socket.remoteAddress}:${socket.remotePort}`, err: err.message },
        'peer TLS handshake refused',
      );
    });
    return server;
  }

  private accept(socket: net.Socket): void {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const refusal = this.closed ? 'closed' : this.acceptRefusal(socket.remoteAddress ?? '');
    if (refusal !== null) {
      this.refusedConnections += 1;
      this.logger.warn({ remote, open: this.inbound.size }, `peer connection refused: ${refusal}`);
      socket.destroy();
      return;
    }
    const conn = new InboundConnection(this, socket, remote, (c) => this.onInboundClosed(c));
    this.inbound.add(conn);
  }

  /** Which connection limit a new connection from `source` would break, if any. */
  private acceptRefusal(source: string): string | null {
    const limits = this.limits;
    if (this.inbound.size >= limits.inboundConnectionsMax) return 'at the connection limit';
    let fromSource = 0;
    let handshaking = 0;
    let handshakingFromSource = 0;
    for (const c of this.inbound) {
      const same = c.socket.remoteAddress === source;
      if (same) fromSource++;
      if (!c.authenticated) {
        handshaking++;
        if (same) handshakingFromSource++;
      }
    }
    if (fromSource >= limits.inboundPerSourceMax) return `${fromSource} connections from ${source}`;
    if (handshakingFromSource >= limits.handshakesPerSourceMax) {
      return `${handshakingFromSource} unauthenticated connections from ${source}`;
    }
    if (handshaking >= limits.handshakesMax) return `${handshaking} unauthenticated connections`;
    return null;
  }

  private onInboundClosed(conn: InboundConnection): void {
    this.inbound.delete(conn);
    // The last connection the peer opened to us is gone: it may complete a `down` verdict.
    if (conn.peerId !== NONE && this.inboundFrom(conn.peerId) === 0) {
      this.peers.get(conn.peerId)?.onInboundGone();
    }
  }

  admits(peer: NodeId): boolean {
    return this.admitPeer === null || this.admitPeer(peer);
  }

  reserveSnapshotBytes(bytes: number): boolean {
    if (this.snapshotReceiveBytes + bytes > this.limits.snapshotReceiveBudgetBytes) return false;
    this.snapshotReceiveBytes += bytes;
    return true;
  }

  releaseSnapshotBytes(bytes: number): void {
    assert(bytes <= this.snapshotReceiveBytes, 'snapshot bytes released twice');
    this.snapshotReceiveBytes -= bytes;
  }

  inboundOpened(peer: NodeId): void {
    this.peers.get(peer)?.onInboundOpened();
  }

  inboundFrom(peer: NodeId): number {
    let open = 0;
    for (const c of this.inbound) if (c.peerId === peer) open++;
    return open;
  }

  dial(target: HostPort, peer: NodeId): net.Socket {
    const material = this.tlsMaterial;
    if (material === null) return net.connect({ host: target.host, port: target.port });
    const memberNames = this.memberNames;
    return tls.connect({
      host: target.host,
      port: target.port,
      ...material,
      minVersion: 'TLSv1.2',
      // The address check as always, then: the server must be the member we meant to dial.
      checkServerIdentity: (host, cert) => {
        const wrongHost = tls.checkServerIdentity(host, cert);
        if (wrongHost !== undefined || memberNames === null) return wrongHost;
        const refusal = memberCertificateRefusal(peer, certificateNames(cert), memberNames());
        return refusal === null ? undefined : new Error(`peer ${peer.toString(16)}: ${refusal}`);
      },
    });
  }

  peerCertificateRefusal(from: NodeId, socket: net.Socket): string | null {
    if (this.memberNames === null || !(socket instanceof tls.TLSSocket)) return null;
    const names = certificateNames(socket.getPeerCertificate());
    return memberCertificateRefusal(from, names, this.memberNames());
  }

  // -------------------------------------------------------------------------------------------
  // Network

  send(to: NodeId, messages: readonly Message[]): void {
    if (this.closed) return;
    const peer = this.peers.get(to);
    if (peer === undefined) {
      this.dropUnknown(to, messages);
      return;
    }
    const faults = this.faults;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      if (faults?.intercept(to, m)) continue;
      peer.enqueue(m);
    }
  }

  flush(): void {
    if (this.closed) return;
    for (const peer of this.peers.values()) peer.flushNow();
  }

  private dropUnknown(to: NodeId, messages: readonly Message[]): void {
    this.droppedUnknownPeer += messages.length;
    this.logger.debug({ peer: to, count: messages.length }, 'messages to an unknown peer dropped');
    for (const m of messages) {
      // Keep the contract: every MsgSnap gets exactly one snapshot report.
      if (m.type === MessageType.Snap) this.report({ kind: 'snapshot', peer: to, ok: false });
    }
    this.report({ kind: 'unreachable', peer: to });
  }

  onMessage(handler: MessageHandler): void {
    this.messageHandler = handler;
  }

  onReport(handler: PeerReportHandler): void {
    this.reportHandler = handler;
  }

  setPeer(id: NodeId, addresses: readonly PeerAddress[]): void {
    if (this.closed) throw new TransportError('TRANSPORT_CLOSED', 'transport is closed');
    if (id === this.localId || id === NONE) {
      throw new TransportError('TRANSPORT_CONFIG', `invalid peer id ${id}`);
    }
    const peer = this.peers.get(id);
    if (peer === undefined) this.peers.set(id, new Peer(this, id, addresses));
    else peer.setAddresses(addresses);
  }

  removePeer(id: NodeId): void {
    const peer = this.peers.get(id);
    if (peer === undefined) return;
    this.peers.delete(id);
    peer.close();
    this.faults?.clear(id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const peer of this.peers.values()) peer.close();
    this.peers.clear();
    for (const conn of this.inbound) conn.destroy();
    this.inbound.clear();
    this.faults?.close();
    this.reports.clear();
    await Promise.all(
      this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  }

  // -------------------------------------------------------------------------------------------
  // TransportContext

  deliver(message: Message): void {
    if (this.closed) return;
    this.messageHandler?.(message);
  }

  report(report: PeerReport): void {
    if (this.closed) return;
    if (this.reports.isFull()) {
      this.reports.shift();
      this.droppedReports += 1;
    }
    this.reports.push(report, 1);
    if (!this.reportsScheduled) {
      this.reportsScheduled = true;
      setImmediate(this.drainReportsBound);
    }
  }

  private drainReports(): void {
    this.reportsScheduled = false;
    while (this.reports.length > 0 && !this.closed) {
      const report = this.reports.shift();
      this.reportHandler?.(report);
    }
  }

  answerFetch(from: NodeId, request: FetchRequest): FetchResponse {
    if (this.closed || this.fetchSource === null) return FETCH_NOT_SERVING;
    const response = answerFetch(this.fetchSource(), request);
    this.logger.info(
      { peer: from, ...request, status: response.status, entries: response.entries.length },
      'answered a recovering peer for committed entries',
    );
    return response;
  }

  /**
   * Serve peers' requests for committed entries (fetch-protocol.ts) from `source`, read at each
   * request (the member's raft storage and commit index). Until set, requests are answered
   * 'unavailable'.
   */
  serveFetch(source: () => FetchSource): void {
    this.fetchSource = source;
  }

  trafficOf(peer: NodeId): PeerTraffic {
    let traffic = this.trafficByPeer.get(peer);
    if (traffic === undefined) {
      if (this.trafficByPeer.size >= PEER_TRAFFIC_MAX) return this.uncounted;
      traffic = { sentBytes: 0, receivedBytes: 0 };
      this.trafficByPeer.set(peer, traffic);
    }
    return traffic;
  }

  roundTrip(peer: NodeId, seconds: number): void {
    if (!this.closed) this.onRoundTrip?.(peer, seconds);
  }

  nextSnapshotId(): number {
    // Ids travel as u32 in chunk headers; 0 is skipped so it never looks like "none".
    this.snapshotIdLast = (this.snapshotIdLast + 1) >>> 0 || 1;
    return this.snapshotIdLast;
  }

  // -------------------------------------------------------------------------------------------
  // Observability

  status(): TransportStatus {
    const peers: PeerStatus[] = [];
    for (const peer of this.peers.values()) peers.push(peer.status());
    return {
      id: this.localId,
      listening: this.addresses(),
      inboundConnections: this.inbound.size,
      refusedConnections: this.refusedConnections,
      snapshotReceiveBytes: this.snapshotReceiveBytes,
      droppedUnknownPeer: this.droppedUnknownPeer,
      droppedReports: this.droppedReports,
      peers,
    };
  }

  /**
   * Bytes sent to and received from each peer since start (kept for a peer removed since, so
   * the counters never go back). Live objects: read them, do not keep them.
   */
  traffic(): ReadonlyMap<NodeId, Readonly<PeerTraffic>> {
    return this.trafficByPeer;
  }

  peerStatus(id: NodeId): PeerStatus | null {
    return this.peers.get(id)?.status() ?? null;
  }
}
