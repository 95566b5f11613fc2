/**
 * One tandem member as a process: wires the real implementations (WAL and snapshot files, LMDB,
 * TCP transport, gRPC API, wall-clock timers) around the member loop. This is the only place
 * where they meet; everything below is written against src/io interfaces.
 *
 * Start-up:
 *   1. derive the cluster id and member ids from the cluster token and member names;
 *   2. recover the WAL (refusing a data directory of another cluster or member) and the KV store;
 *   3. a brand-new member of a new cluster bootstraps the founding configuration; a member
 *      joining an existing cluster (after `member add`) learns its id and the cluster's from the
 *      leader's first handshake, records them in `identity.json`, starts empty and receives a
 *      snapshot from the leader;
 *   4. start the transport, the member loop, the etcd API and the admin endpoint.
 * Stop (SIGTERM/SIGINT): stop the member after its fsync in flight, close listeners, close files.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pino } from 'pino';
import { GrpcLeaderForwarder } from '../api/forwarder.js';
import { type ApiServer, startApiServer } from '../api/server.js';
import { type ManualOp, makePolicy } from '../cluster/policy.js';
import { type Founder, foundingConfig, type MemberInfo } from '../cluster/registry.js';
import { REAL_CLOCK } from '../io/clock.js';
import { LmdbBackend } from '../kv/backend/lmdb.js';
import { RawNode } from '../raft/rawnode.js';
import type { NodeId } from '../raft/types.js';
import { StateType } from '../raft/types.js';
import { Member } from '../server/member.js';
import {
  ApplyTracker,
  liveMetricsView,
  MemberMetrics,
  standbyStalenessSeconds,
} from '../server/metrics.js';
import { SERVER_VERSION, type SelfRole, TandemServer } from '../server/server.js';
import { TandemStateMachine } from '../server/tandem-state-machine.js';
import { FaultyFileSystem } from '../storage/fault-fs.js';
import { NodeFileSystem, StorageError, writeFileAtomic } from '../storage/index.js';
import { WalPersistence } from '../storage/raft-persistence.js';
import { type FetchPeer, peerRepairHook } from '../transport/fetch.js';
import { awaitDialedIdentity } from '../transport/join.js';
import type { TransportLogger } from '../transport/logger.js';
import { TcpTransport } from '../transport/transport.js';
import { Prng } from '../util/prng.js';
import type { TandemConfig } from './config.js';
import { type FaultAdmin, faultAdmin } from './fault-admin.js';

export interface RunningNode {
  readonly memberId: NodeId;
  readonly clusterId: bigint;
  readonly clientPort: number;
  readonly adminPort: number;
  /** Stops everything; resolves when files are closed. */
  stop(): Promise<void>;
}

/** 52 bits of SHA-256 (ids must be safe integers), never 0. */
function id52(...parts: string[]): number {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  const d = h.digest();
  const id = (d.readUInt32BE(0) & 0xfffff) * 2 ** 32 + d.readUInt32BE(4);
  return id === 0 ? 1 : id;
}

export function memberIdOf(token: string, name: string): NodeId {
  return id52('member', token, name);
}

export function clusterIdOf(token: string, founderIds: readonly number[]): number {
  return id52('cluster', token, ...[...founderIds].sort((a, b) => a - b).map(String));
}

export function toUrl(address: string): string {
  return address.includes('://') ? address : `http://${address}`;
}

export function toAddress(url: string): string {
  const i = url.indexOf('://');
  return i === -1 ? url : url.slice(i + 3).replace(/\/+$/, '');
}

export async function startNode(config: TandemConfig): Promise<RunningNode> {
  const logger = pino({ name: 'tandem', level: process.env.TANDEM_LOG_LEVEL ?? 'info' }).child({
    member: config.name,
  });
  const token = config.cluster.token;
  // Every founder computes the same founding state: roles and modes from the peer lists (which
  // must agree, as names and addresses must); zones are published later by each member.
  const founders: Founder[] = [
    {
      name: config.name,
      addresses: [config.listen.peer],
      role: config.role,
      standbyMode: config.redundancy.standby.mode,
    },
    ...config.peers.map((p) => ({
      name: p.name,
      addresses: [...p.addresses],
      role: p.role,
      standbyMode: p.standbyMode,
    })),
  ].map((f) => ({
    id: memberIdOf(token, f.name),
    name: f.name,
    peerUrls: f.addresses.map(toUrl),
    clientUrls: [] as string[],
    role: f.role,
    standbyMode: f.standbyMode,
  }));

  mkdirSync(config.dataDir, { recursive: true });
  const identity = (config.cluster.state === 'existing'
    ? await joinedIdentity(config, logger)
    : null) ?? {
    clusterId: clusterIdOf(
      token,
      founders.map((f) => f.id),
    ),
    memberId: founders[0]!.id,
  };
  const selfId = identity.memberId;
  const clusterIdNumber = identity.clusterId;
  const clusterId = BigInt(clusterIdNumber);
  // Test mode: the storage goes through the fault file system, so /faults can fail an fsync.
  const faultFs = config.testMode.faultInjection
    ? new FaultyFileSystem(new NodeFileSystem())
    : null;
  // GET /metrics: this member's own registry (never prom-client's global one).
  const metrics = new MemberMetrics({
    name: config.name,
    memberIdHex: selfId.toString(16),
    monotonicMs: () => performance.now(),
  });
  const applies = new ApplyTracker(() => REAL_CLOCK.now());
  // The KV store opens first: its member registry names the peers a WAL repair asks.
  const backend = new LmdbBackend({ path: join(config.dataDir, 'kv') });
  const state = new TandemStateMachine({
    backend,
    founders: config.cluster.state === 'new' ? founders : [],
    nowMs: () => REAL_CLOCK.now(),
    lessor: { minTtlSeconds: Math.ceil((1.5 * config.raft.electionMs) / 1000) },
  });
  const peerTls =
    config.tls.peer === null
      ? undefined
      : {
          caFile: config.tls.peer.ca,
          certFile: config.tls.peer.cert,
          keyFile: config.tls.peer.key,
        };
  const recovered = await WalPersistence.recover({
    fs: metrics.timedFileSystem(faultFs ?? new NodeFileSystem()),
    dataDir: config.dataDir,
    mirrorDir: config.wal.mirror,
    clusterId: clusterIdNumber,
    memberId: selfId,
    segmentBytes: config.wal.segmentBytes,
    logger,
    // Protocol-aware recovery: committed entries lost in every WAL copy come from the peers.
    repair: peerRepairHook({
      clusterId: clusterId.toString(16),
      localId: selfId,
      peers: () => repairPeers(selfId, founders, state.allMembers()),
      ...(peerTls === undefined ? {} : { tls: peerTls }),
      logger,
    }),
  }).catch(async (error: unknown) => {
    await backend.close();
    if (error instanceof StorageError && error.code === 'WAL_IDENTITY_MISMATCH') {
      throw new Error(
        `data directory ${config.dataDir} belongs to another cluster or member than this config ` +
          `describes (cluster ${clusterId.toString(16)}, member ${selfId.toString(16)}); ` +
          `check cluster.token, name and peers, or use an empty dataDir: ${error.message}`,
      );
    }
    throw error;
  });

  const storage = recovered.storage;
  if (recovered.fresh && config.cluster.state === 'new') {
    // The founding configuration: a snapshot at index 1 holding the registry's initial state.
    if (state.appliedIndex() === 0) state.bootstrap();
    // Voters form the founding configuration; replicas and hot standbys are its learners;
    // warm and cold standbys are registered outside it.
    const founding = foundingConfig(founders);
    RawNode.bootstrap(storage, founding.voters, state.snapshot(), founding.learners);
    await new Promise<void>((resolve, reject) =>
      recovered.persistence.save(storage.initialState().hardState, [], storage.snapshot(), (e) =>
        e === null ? resolve() : reject(e),
      ),
    );
    logger.info(
      { clusterId: clusterId.toString(16), memberId: selfId.toString(16) },
      'bootstrapped a new cluster',
    );
  } else if (!recovered.fresh) {
    // The KV store may be behind the snapshot the log starts from (a lost backend): restore it.
    const snap = recovered.snapshot;
    if (snap !== null && snap.metadata.index > state.appliedIndex() && snap.data.length > 0) {
      state.restore(snap);
    }
  }

  const transport = new TcpTransport({
    id: selfId,
    clusterId: clusterId.toString(16),
    listen: [parseHostPort(config.listen.peer)],
    logger,
    faultInjection: config.testMode.faultInjection,
    ...(config.tls.peer === null
      ? {}
      : {
          tls: {
            caFile: config.tls.peer.ca,
            certFile: config.tls.peer.cert,
            keyFile: config.tls.peer.key,
          },
        }),
  });
  if (config.testMode.faultInjection) {
    logger.warn('TEST MODE: fault injection is on (admin POST /faults); never use in production');
  }
  await transport.listen();
  const syncPeers = (members: readonly MemberInfo[]): void => {
    for (const m of members) {
      if (m.id !== selfId && m.peerUrls.length > 0)
        transport.setPeer(m.id, m.peerUrls.map(toAddress));
    }
  };
  // Before the registry is known: the configured peers (founders[0] is this member).
  // Every registered member, standbys outside the configuration too (staged or refreshed later).
  syncPeers(
    state.allMembers().length > 0
      ? state.allMembers()
      : founders.slice(1).map((f) => ({ ...f, isLearner: false })),
  );
  state.onPeersChanged = () => syncPeers(state.allMembers());

  const tickMs = config.raft.heartbeatMs;
  let server: TandemServer | null = null;
  const member = new Member({
    id: selfId,
    clock: REAL_CLOCK,
    network: transport,
    persistence: recovered.persistence,
    storage,
    stateMachine: applies.observe(state),
    random: new Prng(selfId ^ Date.now()),
    timing: {
      tickMs,
      electionTicks: Math.max(2, Math.round(config.raft.electionMs / tickMs)),
      heartbeatTicks: 1,
      requestTimeoutMs: Math.max(5000, 5 * config.raft.electionMs),
    },
    snapshotEveryEntries: config.raft.snapshotEntries,
    compactionKeepEntries: Math.min(5000, config.raft.snapshotEntries),
    fastFailover: config.raft.fastFailover,
    logger,
    hooks: {
      onSoftState: (soft, term) => {
        logger.info({ leader: soft.lead.toString(16), term, role: soft.raftState }, 'raft state');
        server?.onLeadership(soft.raftState === StateType.Leader);
        metrics.noteLeader(soft.lead);
      },
      onConfChange: (_change, confState) => {
        syncPeers(state.allMembers());
        const all = new Set([
          ...confState.voters,
          ...confState.learners,
          ...confState.votersOutgoing,
        ]);
        if (!all.has(selfId)) logger.warn('this member was removed from the cluster');
      },
      onFatal: (error) => {
        logger.fatal({ err: error }, 'member stopped on a storage failure');
        process.exitCode = 1;
      },
    },
  });
  const forwarder = new GrpcLeaderForwarder();
  server = new TandemServer({
    forwarder,
    member,
    state,
    clock: REAL_CLOCK,
    clusterId,
    name: config.name,
    clientUrls: [toUrl(config.listen.client)],
    electionTimeoutMs: config.raft.electionMs,
    dbSizeBytes: () => dirBytes(join(config.dataDir, 'kv')),
    zone: config.zone,
    standby: config.redundancy.standby,
    preferLeaderZone: config.replication.preferLeaderZone,
    policy: makePolicy({
      voters: config.replication.voters,
      replaceAfterMs: config.redundancy.replaceAfterMs,
      preferSameZone: config.redundancy.preferSameZone,
      // Silent for two election timeouts (at least CheckQuorum's) = unreachable.
      silentAfterMs: Math.min(2 * config.raft.electionMs, config.redundancy.replaceAfterMs),
      stabilityMs: Math.min(5_000, config.redundancy.replaceAfterMs),
    }),
    onPolicyEvent: (event) => {
      logger.info(event, 'redundancy policy');
      metrics.notePolicyEvent(event);
    },
    ackAllTimeoutMs: Math.max(2_000, 2 * config.raft.electionMs),
  });
  // Peers recovering a damaged WAL ask for committed entries (transport/fetch.ts).
  transport.serveFetch(() => ({ storage, commitIndex: member.commitIndex }));
  member.start();
  server.start();

  const api: ApiServer = await startApiServer({
    backend: server,
    listen: config.listen.client,
    logger,
    defaults: {
      consistency: { kind: config.replication.readDefault },
      ack: config.replication.ack,
    },
    ...(config.tls.client === null
      ? {}
      : {
          tls: {
            cert: readFileSync(config.tls.client.cert),
            key: readFileSync(config.tls.client.key),
            ...(config.tls.client.ca == null ? {} : { ca: readFileSync(config.tls.client.ca) }),
          },
        }),
  });
  const faults = config.testMode.faultInjection
    ? faultAdmin(transport, () => state.members(), faultFs)
    : null;
  const adminServer = server;
  metrics.attach(() =>
    liveMetricsView({ member, server: adminServer, state, applies, zone: config.zone }),
  );
  const admin = await startAdmin(
    config.listen.admin,
    faults,
    metrics,
    () => {
      const self = state.member(selfId);
      const selfRole = adminServer.selfRole();
      const leaderHeardMs = member.lastHeardMs.get(member.leader);
      return {
        name: config.name,
        memberId: selfId.toString(16),
        clusterId: clusterId.toString(16),
        version: SERVER_VERSION,
        leader: member.leader.toString(16),
        isLeader: member.isLeader,
        term: member.term,
        commitIndex: member.commitIndex,
        appliedIndex: member.appliedIndex,
        revision: state.revision(),
        // tandem's view of this member (its role as confirmed with the leader, see
        // TandemServer.selfRole; the configured zone until published).
        ...roleFields(selfRole),
        zone: self?.zone || config.zone,
        health: adminServer.redundancy?.health(selfId)?.state ?? self?.health ?? 'unknown',
        lastHeardFromLeaderMsAgo:
          leaderHeardMs === undefined ? null : Math.max(0, REAL_CLOCK.now() - leaderHeardMs),
        // A warm or cold standby: seconds since it last applied anything (metrics.ts); else null.
        standbyStalenessSeconds: standbyStalenessSeconds(
          selfRole.role,
          selfRole.standbyMode,
          applies,
        ),
        // Reads served from local state at once vs after a read barrier (bounded reads' locality).
        reads: adminServer.readCounters(),
        // etcd's view (voters and learners) ...
        members: state.members().map((m) => ({ ...m, id: m.id.toString(16) })),
        // ... and tandem's (standbys outside the configuration too, the leader's live health).
        registry: state.allMembers().map((m) => {
          const live = adminServer.redundancy?.health(m.id) ?? null;
          const progress = member.isLeader ? member.status().progress.get(m.id) : undefined;
          return {
            ...m,
            id: m.id.toString(16),
            health: live?.state ?? m.health,
            healthSinceMs: live?.sinceMs ?? m.healthSinceMs,
            // Warm standbys: ms since a leader recorded it caught up (wall clock), else null.
            lastRefreshMs:
              m.lastRefreshAtMs === null ? null : Math.max(0, Date.now() - m.lastRefreshAtMs),
            lag: progress === undefined ? null : Math.max(0, member.commitIndex - progress.match),
          };
        }),
      };
    },
    (op, name) => adminServer.manualMemberOp(op, name),
  );
  logger.info(
    { client: config.listen.client, peer: config.listen.peer, admin: config.listen.admin },
    'tandem member serving',
  );

  let stopping: Promise<void> | null = null;
  return {
    memberId: selfId,
    clusterId,
    clientPort: api.port,
    adminPort: (admin.address() as { port: number }).port,
    stop(): Promise<void> {
      stopping ??= (async () => {
        server?.close();
        forwarder.close();
        await new Promise<void>((resolve) => member.stop(resolve));
        await Promise.allSettled([api.close(), transport.close(), closeServer(admin)]);
        await recovered.persistence.close();
        await backend.close();
        logger.info('tandem member stopped');
      })();
      return stopping;
    },
  };
}

/** Where a joined member keeps the ids the cluster gave it (founders compute theirs). */
export const IDENTITY_FILE = 'identity.json';
/** How often a joining member says what it is waiting for. */
const JOIN_WAIT_LOG_INTERVAL_MS = 10_000;

interface Identity {
  readonly clusterId: number;
  readonly memberId: NodeId;
}

function tokenDigest(token: string): string {
  return createHash('sha256').update('tandem-token\0').update(token).digest('hex');
}

/**
 * The identity of a member of an existing cluster (`cluster.state: existing`): recorded in
 * `identity.json` once joined; for a fresh data directory, learned from the leader that dials
 * this member after `member add`. Null when the data directory is a founder's (it holds a WAL
 * but no identity file): a founder's ids are computed, and the WAL checks them.
 */
async function joinedIdentity(
  config: TandemConfig,
  logger: TransportLogger,
): Promise<Identity | null> {
  const file = join(config.dataDir, IDENTITY_FILE);
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as {
      tokenSha256: string;
      clusterId: string;
      memberId: string;
    };
    if (saved.tokenSha256 !== tokenDigest(config.cluster.token)) {
      throw new Error(
        `data directory ${config.dataDir} belongs to another cluster: it joined a cluster with a different cluster.token`,
      );
    }
    return {
      clusterId: Number.parseInt(saved.clusterId, 16),
      memberId: Number.parseInt(saved.memberId, 16),
    };
  }
  const walDir = join(config.dataDir, 'wal');
  if (existsSync(walDir) && readdirSync(walDir).length > 0) return null;
  const peerUrl = toUrl(config.listen.peer);
  const waiting = setInterval(
    () =>
      logger.info(
        { peerUrl },
        'joining: waiting for the leader to dial (run member add for this peer URL)',
      ),
    JOIN_WAIT_LOG_INTERVAL_MS,
  );
  logger.info(
    { peerUrl },
    'joining: waiting for the leader to dial (run member add for this peer URL)',
  );
  let dialed: Awaited<ReturnType<typeof awaitDialedIdentity>>;
  try {
    dialed = await awaitDialedIdentity({
      listen: parseHostPort(config.listen.peer),
      logger,
      ...(config.tls.peer === null
        ? {}
        : {
            tls: {
              caFile: config.tls.peer.ca,
              certFile: config.tls.peer.cert,
              keyFile: config.tls.peer.key,
            },
          }),
    });
  } finally {
    clearInterval(waiting);
  }
  const identity = { clusterId: Number.parseInt(dialed.clusterId, 16), memberId: dialed.localId };
  if (!Number.isSafeInteger(identity.clusterId) || identity.clusterId <= 0) {
    throw new Error(`joining: the leader sent an invalid cluster id '${dialed.clusterId}'`);
  }
  await writeFileAtomic(
    new NodeFileSystem(),
    config.dataDir,
    IDENTITY_FILE,
    Buffer.from(
      JSON.stringify({
        tokenSha256: tokenDigest(config.cluster.token),
        clusterId: dialed.clusterId,
        memberId: dialed.localId.toString(16),
      }),
    ),
  );
  logger.info(
    {
      clusterId: dialed.clusterId,
      memberId: dialed.localId.toString(16),
      from: dialed.from.toString(16),
    },
    'joining: the cluster named this member',
  );
  return identity;
}

/** Whom a WAL repair asks: every other member the registry or the config knows, by id. */
function repairPeers(
  selfId: NodeId,
  founders: readonly { id: NodeId; peerUrls: readonly string[] }[],
  registry: readonly { id: NodeId; peerUrls: readonly string[] }[],
): FetchPeer[] {
  const byId = new Map<NodeId, FetchPeer>();
  for (const m of [...registry, ...founders]) {
    if (m.id === selfId || m.peerUrls.length === 0 || byId.has(m.id)) continue;
    byId.set(m.id, { id: m.id, addresses: m.peerUrls.map(toAddress) });
  }
  return [...byId.values()];
}

function parseHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/** /status fields of this member's role; `roleSource` says how it knows (SelfRole.source). */
function roleFields(r: SelfRole) {
  return { role: r.role, placement: r.placement, standbyMode: r.standbyMode, roleSource: r.source };
}

/** A POST /member/<op> body larger than this is refused. */
const MEMBER_OP_BODY_BYTES_MAX = 4096;
const MANUAL_OPS: readonly ManualOp[] = ['promote', 'demote', 'standby'];

/**
 * POST /member/promote|demote|standby {"name": "n4"}: an operator's override, planned and
 * proposed by the leader. 200 {"ok":true,"reason"} once applied; 409 {"error","code"} with the
 * policy's refusal; 421 {"code":"NOT_LEADER","leader"} on a follower (the CLI tries the next
 * endpoint: the admin address of the leader is not in the registry).
 */
function handleMemberOp(
  req: IncomingMessage,
  res: ServerResponse,
  op: ManualOp,
  run: (op: ManualOp, name: string) => Promise<string>,
): void {
  let body = '';
  let tooLarge = false;
  req.setEncoding('utf8');
  req.on('data', (chunk: string) => {
    body += chunk;
    if (body.length > MEMBER_OP_BODY_BYTES_MAX) tooLarge = true;
  });
  req.on('end', () => {
    const reply = (code: number, value: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    let name: unknown;
    try {
      name = tooLarge ? undefined : (JSON.parse(body) as { name?: unknown }).name;
    } catch {
      name = undefined;
    }
    if (typeof name !== 'string' || name === '') {
      reply(400, { error: 'expected a JSON body {"name": "<member name>"}', code: 'BAD_REQUEST' });
      return;
    }
    run(op, name).then(
      (reason) => reply(200, { ok: true, reason }),
      (error: Error & { code?: string }) => {
        const code = error.code ?? 'ERROR';
        reply(code === 'NOT_LEADER' ? 421 : 409, { error: error.message, code });
      },
    );
  });
}

async function startAdmin(
  listen: string,
  faults: FaultAdmin | null,
  metrics: MemberMetrics,
  status: () => unknown,
  memberOp: (op: ManualOp, name: string) => Promise<string>,
): Promise<Server> {
  const { host, port } = parseHostPort(listen);
  const server = createServer((req, res) => {
    if (faults?.handle(req, res) === true) return;
    const opMatch = /^\/member\/([a-z]+)$/.exec(req.url ?? '');
    if (req.method === 'POST' && opMatch !== null) {
      const op = opMatch[1] as ManualOp;
      if (MANUAL_OPS.includes(op)) {
        handleMemberOp(req, res, op, memberOp);
        return;
      }
    }
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"health":"true"}');
      return;
    }
    if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
      metrics.scrape().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.contentType });
          res.end(text);
        },
        (error: Error) => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: `metrics: ${error.message}`, code: 'METRICS' }));
        },
      );
      return;
    }
    if (req.url === '/status' || req.url === '/cluster') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status()));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not found"}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function dirBytes(dir: string): number {
  try {
    return statSync(join(dir, 'data.mdb')).size;
  } catch {
    return 0;
  }
}
