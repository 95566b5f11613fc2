/**
 * One tandem member as a process: wires the real implementations (WAL and snapshot files, LMDB,
 * TCP transport, gRPC API, admin HTTP, wall-clock timers) around a member assembled by
 * src/server/assemble.ts. This is the only place where they meet; everything below is written
 * against src/io interfaces.
 *
 * Start-up:
 *   1. derive the cluster id and member ids (identity.ts);
 *   2. recover the KV store, then the WAL (refusing a data directory of another cluster or
 *      member; committed entries damaged in every copy are fetched from peers);
 *   3. a brand-new member of a new cluster bootstraps the founding configuration; a joining one
 *      starts empty and receives a snapshot from the leader;
 *   4. start the transport, the member, the etcd API and the admin endpoint.
 * Stop (SIGTERM/SIGINT): stop the member after its fsync in flight, close listeners, close files.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { type Logger, pino } from 'pino';
import { type AdminServer, startAdminServer } from '../api/admin.js';
import { JwtTokens } from '../api/auth-jwt.js';
import { dashboard } from '../api/dashboard.js';
import { GrpcLeaderForwarder } from '../api/forwarder.js';
import type { MemberCallTls } from '../api/grpc-client.js';
import { LiveStats } from '../api/live-stats.js';
import { type ApiServer, startApiServer } from '../api/server.js';
import { makePolicy } from '../cluster/policy.js';
import { type Founder, foundingConfig, type MemberInfo } from '../cluster/registry.js';
import { REAL_CLOCK } from '../io/clock.js';

import { LmdbBackend } from '../kv/backend/lmdb.js';
import { RawNode } from '../raft/rawnode.js';
import { inConfState, type NodeId } from '../raft/types.js';
import { assembleMember, type MemberSpec } from '../server/assemble.js';
import { MemberEventLog } from '../server/event-log.js';
import type { EtcdFacade } from '../server/facade.js';
import { ApplyTracker, liveMetricsView, MemberMetrics } from '../server/metrics.js';
import { memberStatusJson } from '../server/status.js';
import { TandemStateMachine } from '../server/tandem-state-machine.js';
import { FaultyFileSystem } from '../storage/fault-fs.js';
import { NodeFileSystem, StorageError } from '../storage/index.js';
import { type RecoveredState, WalPersistence } from '../storage/raft-persistence.js';
import { type FetchPeer, peerRepairHook } from '../transport/fetch.js';
import { type ClusterSecret, clusterSecret } from '../transport/handshake.js';
import { TcpTransport } from '../transport/transport.js';
import { Prng } from '../util/prng.js';
import { parseHostPort, toAddress, toUrl } from './addresses.js';
import type { ScheduledBackups } from './backup.js';
import { type ClientTlsConfig, kvDir, readClusterSecret, type TandemConfig } from './config.js';
import { EntryTrace } from './entry-trace.js';
import { faultAdmin } from './fault-admin.js';
import { foundersOf, type Identity, resolveIdentity } from './identity.js';
import { codeCacheState, StartupTimeline } from './startup-timeline.js';

/** The built dashboard (`npm run build`): dist/dashboard from src/cli/ and dist/cli/ alike. */
const DASHBOARD_DIR = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'dist',
  'dashboard',
);
/** The event-loop delay histogram's resolution. */
const EVENT_LOOP_RESOLUTION_MS = 10;
/**
 * Member.snapshotEveryEntriesMax as a multiple of raft.snapshotEntries: 50,000 entries by
 * default, so a restart replays at most about 55,000 entries of WAL (5,000 kept behind the
 * snapshot), about 0.3 s of CPU here (100,000 took 0.5–0.8 s, 10,000 0.1–0.2 s).
 */
const SNAPSHOT_ENTRIES_MAX_FACTOR = 5;

export interface RunningNode {
  readonly memberId: NodeId;
  readonly clusterId: bigint;
  readonly clientPort: number;
  readonly adminPort: number;
  /** Stops everything; resolves when files are closed. */
  stop(): Promise<void>;
}

/**
 * `startup` carries the marks `tandem start` made before (modules loaded, config read); the
 * phases here are marked in it and logged (startup-timeline.ts).
 */
export async function startNode(
  config: TandemConfig,
  startup: StartupTimeline = new StartupTimeline(),
): Promise<RunningNode> {
  const logger = pino({ name: 'tandem', level: process.env.TANDEM_LOG_LEVEL ?? 'info' }).child({
    member: config.name,
  });
  // First: without the secret no peer would talk to this member (the error names the option).
  const secret = clusterSecret(readClusterSecret(config));
  const founders = foundersOf(config);
  mkdirSync(config.dataDir, { recursive: true });
  const identity = await resolveIdentity(config, founders, logger, secret);
  const selfId = identity.memberId;
  const clusterId = BigInt(identity.clusterId);
  // GET /metrics: this member's own registry (never prom-client's global one).
  const metrics = new MemberMetrics({
    name: config.name,
    memberIdHex: selfId.toString(16),
    monotonicMs: () => performance.now(),
  });
  const disk = await openStorage(config, identity, founders, metrics, logger, secret);
  const { state, recovered } = disk;
  startup.mark('storage');
  const transport = await startTransport(
    config,
    identity,
    founders,
    state,
    metrics,
    logger,
    secret,
  );
  startup.mark('transport');
  const memberTls = memberCallTls(config);
  const forwarder = new GrpcLeaderForwarder(memberTls);
  // The dashboard's timeline: made before the member so the policy's events reach it.
  let eventLog: MemberEventLog | null = null;
  const assembled = assembleMember(memberSpec(config, selfId, clusterId), {
    clock: REAL_CLOCK,
    network: transport,
    persistence: recovered.persistence,
    storage: recovered.storage,
    state,
    random: new Prng(selfId ^ Date.now()),
    forwarder,
    logger,
    dbSizeBytes: () => disk.backend.sizeBytes(),
    dbSizeInUseBytes: () => disk.backend.inUseBytes(),
    applyTimer: metrics.applyTimer(),
    defragment: async () => {
      logger.info({ dbSizeBytes: disk.backend.sizeBytes() }, 'defragmenting the KV store');
      await disk.backend.defragment();
      logger.info({ dbSizeBytes: disk.backend.sizeBytes() }, 'defragmented the KV store');
    },
    onPolicyEvent: (event) => {
      logger.info(event, 'redundancy policy');
      metrics.notePolicyEvent(event);
      eventLog?.notePolicy(event);
    },
  });
  const { member, events } = assembled;
  eventLog = new MemberEventLog(
    {
      nowMs: REAL_CLOCK.now,
      wallNowMs: REAL_CLOCK.wallNow,
      nameOf: (id) => state.allMembers().find((m) => m.id === id)?.name || id.toString(16),
      lastHeardMs: (id) => member.lastHeardMs.get(id),
    },
    recovered.storage.initialState().confState,
  );
  eventLog.attach(events);
  const loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  loopDelay.enable();
  const liveStats = new LiveStats({
    nowMs: REAL_CLOCK.wallNow,
    eventLoopDelayMs: () => {
      const ms = loopDelay.count === 0 ? null : loopDelay.percentile(99) / 1e6;
      loopDelay.reset();
      return ms;
    },
  });
  events.softState.push((soft, term) => {
    logger.info({ leader: soft.lead.toString(16), term, role: soft.raftState }, 'raft state');
    metrics.noteLeader(soft.lead);
  });
  // Said once, when it happens: a standby outside the configuration sees every later change too.
  let inConfig = inConfState(recovered.storage.initialState().confState, selfId);
  events.confChange.push((_change, confState) => {
    const now = inConfState(confState, selfId);
    if (inConfig && !now) {
      // A warm standby leaves the configuration after each refresh and stays registered (the
      // registry has applied the change by now): routine, not a removal.
      const self = state.allMembers().find((m) => m.id === selfId);
      if (self?.role === 'standby') {
        logger.info(
          { standbyMode: self.standbyMode },
          'standby refreshed: outside the configuration again',
        );
      } else logger.warn('this member was removed from the cluster');
    }
    inConfig = now;
  });
  events.fatal.push((error) => {
    logger.fatal({ err: error }, 'member stopped on a storage failure');
    process.exitCode = 1;
  });
  const applies = new ApplyTracker(() => REAL_CLOCK.now());
  applies.attach(events);
  // Stage timestamps for bench/put-trace.ts; off unless asked for.
  const traceDir = process.env.TANDEM_TRACE_DIR;
  const entryTrace = traceDir === undefined || traceDir === '' ? null : new EntryTrace(selfId);
  entryTrace?.attach(events);
  // Peers recovering a damaged WAL ask for committed entries (transport/fetch-protocol.ts).
  transport.serveFetch(() => ({ storage: recovered.storage, commitIndex: member.commitIndex }));
  assembled.role.firstConfirmed.push(() => {
    const self = assembled.role.selfRole();
    logger.info(
      { role: self.role, serves: self.serves, sinceStartMs: StartupTimeline.sinceStartMs() },
      'role confirmed with the leader',
    );
  });
  assembled.start();
  startup.mark('member');
  const backups = await scheduleBackups(config, assembled, logger);

  metrics.attach(() =>
    liveMetricsView({
      ...assembled,
      applies,
      zone: config.zone,
      dbSizeBytes: () => disk.backend.sizeBytes(),
      dbSizeInUseBytes: () => disk.backend.inUseBytes(),
      peerTraffic: () => transport.traffic(),
    }),
  );
  const open: { api: ApiServer | null; admin: AdminServer | null } = { api: null, admin: null };
  const shutdown = async (): Promise<void> => {
    await backups?.close();
    forwarder.close();
    loopDelay.disable();
    await new Promise<void>((resolve) => assembled.stop(resolve));
    if (entryTrace !== null) {
      // A bench facility: a trace that cannot be written never stops the shutdown.
      try {
        const path = entryTrace.write(traceDir!);
        logger.info({ path, dropped: entryTrace.dropped }, 'entry trace written');
      } catch (error) {
        logger.warn({ err: error, dir: traceDir }, 'entry trace not written');
      }
    }
    await Promise.allSettled([open.api?.close(), transport.close(), open.admin?.close()]);
    await recovered.persistence.close();
    await disk.backend.close();
  };
  try {
    const status = () => ({
      ...(memberStatusJson({
        assembled,
        applies,
        name: config.name,
        clusterId,
        zone: config.zone,
        configuredVoters: config.replication.voters,
        nowMs: REAL_CLOCK.now,
        wallNowMs: REAL_CLOCK.wallNow,
      }) as object),
      // Operators (and tests) see at a glance that this member obeys POST /faults.
      testMode: { faultInjection: config.testMode.faultInjection },
    });
    const api = await startClientPort(
      config,
      assembled.facade,
      metrics,
      liveStats,
      status,
      logger,
      memberTls,
      secret,
      entryTrace,
    );
    open.api = api;
    startup.mark('clientPort');
    const faults = config.testMode.faultInjection
      ? faultAdmin(transport, () => state.members(), disk.faultFs)
      : null;
    const devControls = config.testMode.devControls;
    open.admin = await startAdminServer({
      listen: parseHostPort(config.listen.admin),
      metrics,
      status,
      ready: () => assembled.facade.clientReadiness(),
      memberOp: (op, name) => assembled.facade.manualMemberOp(op, name),
      authorize: (token) => api.authorizeAdmin(token),
      moveLeader: async (name) => {
        const target = state.members().find((m) => m.name === name);
        if (target === undefined) throw new Error(`no member named ${name} in the configuration`);
        await assembled.facade.moveLeader(BigInt(target.id), {
          consistency: { kind: 'linearizable' },
          ack: 'quorum',
        });
        return `${name} leads`;
      },
      dashboard: dashboard({
        staticDir: DASHBOARD_DIR,
        status,
        stats: () => liveStats.sample(),
        events: eventLog,
        range: (req, opts) => assembled.facade.range(req, opts),
        devControls: devControls === null ? null : `http://${devControls}`,
      }),
      ...(faults === null ? {} : { extra: (req, res) => faults.handle(req, res) }),
      ...serverTls(config.tls.admin),
    });
  } catch (error) {
    // A port taken, say: close everything already open, or the process lingers half-started.
    await shutdown();
    throw error;
  }
  startup.mark('adminPort');
  logger.info(
    {
      client: config.listen.client,
      peer: config.listen.peer,
      admin: config.listen.admin,
      startupMs: startup.summary(),
      codeCache: codeCacheState(),
    },
    'tandem member serving',
  );

  let stopping: Promise<void> | null = null;
  return {
    memberId: selfId,
    clusterId,
    clientPort: open.api.port,
    adminPort: open.admin.port,
    stop(): Promise<void> {
      stopping ??= shutdown().then(() => logger.info('tandem member stopped'));
      return stopping;
    },
  };
}

/**
 * Scheduled backups (config `backup`), written while this member leads. Their module (and its
 * progress bars, for `tandem backup now`) loads only when backups are configured.
 */
async function scheduleBackups(
  config: TandemConfig,
  assembled: ReturnType<typeof assembleMember>,
  logger: Logger,
): Promise<ScheduledBackups | null> {
  const backup = config.backup;
  if (backup === null) return null;
  const { ScheduledBackups } = await import('./backup.js');
  const backups = new ScheduledBackups({
    dir: backup.dir,
    keep: backup.keep,
    snapshot: () => assembled.facade.snapshot(),
    isLeader: () => assembled.member.isLeader,
    wallNowMs: REAL_CLOCK.wallNow,
    logger,
  });
  assembled.schedule.every('backup', backup.everyMs, () => backups.tick());
  return backups;
}

/**
 * The KV store, then the WAL and snapshots (the KV store opens first: its member registry names
 * the peers a WAL repair asks), then the founding configuration or the KV store's catch-up.
 */
async function openStorage(
  config: TandemConfig,
  identity: Identity,
  founders: readonly Founder[],
  metrics: MemberMetrics,
  logger: Logger,
  secret: ClusterSecret,
) {
  const selfId = identity.memberId;
  // Test mode: the storage goes through the fault file system, so /faults can fail an fsync.
  const faultFs = config.testMode.faultInjection
    ? new FaultyFileSystem(new NodeFileSystem())
    : null;
  // The WAL is the durable record: the KV store commits without fsync (lmdb.ts's header).
  const backend = new LmdbBackend({ path: kvDir(config), durable: false });
  if (backend.rebuilt !== null) {
    logger.warn(
      { reason: backend.rebuilt },
      'KV store not trusted after an unclean stop: rebuilding it from the snapshot and the WAL',
    );
  }
  const state = new TandemStateMachine({
    backend,
    founders: config.cluster.state === 'new' ? founders : [],
    nowMs: () => REAL_CLOCK.now(),
    lessor: { minTtlSeconds: Math.ceil((1.5 * config.raft.electionMs) / 1000) },
  });
  const peerTls = peerTlsFiles(config);
  const recovered = await WalPersistence.recover({
    fs: metrics.timedFileSystem(faultFs ?? new NodeFileSystem()),
    dataDir: config.dataDir,
    mirrorDir: config.wal.mirror,
    clusterId: identity.clusterId,
    memberId: selfId,
    segmentBytes: config.wal.segmentBytes,
    logger,
    repair: peerRepairHook({
      clusterId: identity.clusterId.toString(16),
      localId: selfId,
      secret,
      peers: () => repairPeers(selfId, founders, state.allMembers()),
      ...(peerTls === undefined ? {} : { tls: peerTls }),
      logger,
    }),
  }).catch(async (error: unknown) => {
    await backend.close();
    throw explainRecoveryError(error, config, BigInt(identity.clusterId), selfId);
  });
  await bootstrapOrRestore(config, founders, state, recovered, (fields, message) =>
    logger.info(fields, message),
  );
  return { backend, state, recovered, faultFs };
}

/**
 * The peer transport, listening, with every registered member as a peer (standbys outside the
 * configuration too) and kept so as the registry changes; before the registry is known, the
 * configured peers.
 *
 * Who may connect (besides holding the secret): any id except those seen leaving the registry
 * (removed members; an added member gets a fresh id, so a removed id never returns). An id not
 * in the registry yet is admitted: this member's registry is only as current as its applied log,
 * and a joiner, or a leader added while this member was down or resting outside the log, must
 * reach it (SECURITY.md, "Peer plane").
 */
async function startTransport(
  config: TandemConfig,
  identity: Identity,
  founders: readonly Founder[],
  state: TandemStateMachine,
  metrics: MemberMetrics,
  logger: Logger,
  secret: ClusterSecret,
): Promise<TcpTransport> {
  const selfId = identity.memberId;
  const peerTls = peerTlsFiles(config);
  const registered = new Set<NodeId>();
  const removed = new Set<NodeId>();
  const transport = new TcpTransport({
    id: selfId,
    secret,
    admitPeer: (id) => !removed.has(id),
    clusterId: identity.clusterId.toString(16),
    listen: [parseHostPort(config.listen.peer)],
    logger,
    faultInjection: config.testMode.faultInjection,
    onRoundTrip: (peer, seconds) => metrics.notePeerRoundTrip(peer, seconds),
    ...(peerTls === undefined ? {} : { tls: peerTls }),
    ...(config.tls.peer?.checkNames === true && {
      memberNames: () => memberNames(founders, state.allMembers()),
    }),
  });
  if (config.testMode.faultInjection) {
    logger.warn(
      {},
      'TEST MODE: fault injection is on (admin POST /faults); never use in production',
    );
  }
  await transport.listen();
  const syncPeers = (members: readonly MemberInfo[]): void => {
    const now = new Set(members.map((m) => m.id));
    for (const id of registered) if (!now.has(id)) removed.add(id);
    for (const id of now) removed.delete(id);
    registered.clear();
    for (const id of now) registered.add(id);
    for (const m of members) {
      if (m.id !== selfId && m.peerUrls.length > 0)
        transport.setPeer(m.id, m.peerUrls.map(toAddress));
    }
  };
  syncPeers(
    state.allMembers().length > 0
      ? state.allMembers()
      : founders.slice(1).map((f) => ({ ...f, isLearner: false })),
  );
  state.onPeersChanged = () => syncPeers(state.allMembers());
  return transport;
}

/** The client port: etcd's gRPC API and its HTTP/JSON gateway, with this member's metrics. */
function startClientPort(
  config: TandemConfig,
  facade: EtcdFacade,
  metrics: MemberMetrics,
  liveStats: LiveStats,
  status: () => unknown,
  logger: Logger,
  memberTls: MemberCallTls | null,
  secret: ClusterSecret,
  entryTrace: EntryTrace | null,
): Promise<ApiServer> {
  return startApiServer({
    clusterSecret: secret,
    status,
    backend: facade,
    name: config.name,
    onCallEnd: (path, kind, code, seconds) => {
      // First: the trace dates the call's start back from now by `seconds`.
      entryTrace?.noteCall(path, code, seconds);
      metrics.noteGrpcCall(path, kind, code, seconds);
      liveStats.noteCall(path, seconds);
    },
    listen: config.listen.client,
    logger,
    metrics,
    defaults: {
      consistency: { kind: config.replication.readDefault },
      ack: config.replication.ack,
    },
    ...serverTls(config.tls.client),
    ...(memberTls === null ? {} : { memberTls }),
    ...jwtTokens(config),
    limits: {
      concurrentStreamsMax: config.limits.concurrentStreamsMax,
      keepaliveMinTimeMs: config.limits.grpcKeepaliveMinTimeMs,
      keepalivePermitWithoutStream: config.limits.grpcKeepalivePermitWithoutStream,
    },
  });
}

/** etcd's --auth-token jwt: the configured key, read now (a missing file fails the start). */
function jwtTokens(config: TandemConfig): { jwt?: JwtTokens } {
  const jwt = config.auth.jwt;
  if (jwt === null) return {};
  return {
    jwt: new JwtTokens({
      signMethod: jwt.signMethod,
      privateKey: readFileSync(jwt.privateKey),
      ...(jwt.publicKey !== null && { publicKey: readFileSync(jwt.publicKey) }),
      ttlMs: jwt.ttlMs,
    }),
  };
}

/** A TLS-serving port's PEM files, read (the client port, the admin endpoint). */
function serverTls(tls: ClientTlsConfig | null) {
  if (tls === null) return {};
  return {
    tls: {
      cert: readFileSync(tls.cert),
      key: readFileSync(tls.key),
      ...(tls.ca == null ? {} : { ca: readFileSync(tls.ca) }),
    },
  };
}

/**
 * What this member presents when it calls another member's `https://` client port (config.ts,
 * "TLS"): it trusts the client and the peer CA; it shows its peer certificate, or without peer
 * TLS its client port's own. Null when neither port has TLS.
 */
function memberCallTls(config: TandemConfig): MemberCallTls | null {
  const { client, peer } = config.tls;
  const own = peer ?? client;
  if (own === null) return null;
  const cas = [client?.ca, peer?.ca].filter((f): f is string => f != null);
  return {
    ca: cas.length === 0 ? null : Buffer.concat(cas.map((f) => readFileSync(f))),
    cert: readFileSync(own.cert),
    key: readFileSync(own.key),
  };
}

/** Members' names by id (the registry's, else the founders'), for binding peer certificates. */
function memberNames(
  founders: readonly Founder[],
  registry: readonly MemberInfo[],
): Map<NodeId, string> {
  const names = new Map<NodeId, string>();
  for (const f of founders) names.set(f.id, f.name);
  for (const m of registry) if (m.name !== '') names.set(m.id, m.name);
  return names;
}

/** The member's spec from its config: identity, published facts, timing, policies. */
function memberSpec(config: TandemConfig, id: NodeId, clusterId: bigint): MemberSpec {
  const tickMs = config.raft.heartbeatMs;
  return {
    id,
    clusterId,
    name: config.name,
    clientUrls: [toUrl(config.listen.client, config.tls.client !== null)],
    zone: config.zone,
    standby: config.redundancy.standby,
    timing: {
      tickMs,
      electionTicks: Math.max(2, Math.round(config.raft.electionMs / tickMs)),
      heartbeatTicks: 1,
      requestTimeoutMs: Math.max(5000, 5 * config.raft.electionMs),
    },
    snapshotEveryEntries: config.raft.snapshotEntries,
    // A large state is packed once the log since the last snapshot outgrows it (snapshotDue),
    // at most 5× less often than raft.snapshotEntries asks.
    snapshotEveryEntriesMax: SNAPSHOT_ENTRIES_MAX_FACTOR * config.raft.snapshotEntries,
    compactionKeepEntries: Math.min(5000, config.raft.snapshotEntries),
    fastFailover: config.raft.fastFailover,
    preferLeaderZone: config.replication.preferLeaderZone,
    policy: makePolicy({
      voters: config.replication.voters,
      replaceAfterMs: config.redundancy.replaceAfterMs,
      preferSameZone: config.redundancy.preferSameZone,
      // Silent for two election timeouts (at least CheckQuorum's) = unreachable.
      silentAfterMs: Math.min(2 * config.raft.electionMs, config.redundancy.replaceAfterMs),
      stabilityMs: Math.min(5_000, config.redundancy.replaceAfterMs),
    }),
    ackAllTimeoutMs: Math.max(2_000, 2 * config.raft.electionMs),
    quotaBackendBytes: config.quota.backendBytes,
    leasesMax: config.limits.leasesMax,
  };
}

/**
 * A brand-new founder writes the founding configuration: a snapshot at index 1 holding the
 * registry's initial state (voters form the configuration; replicas and hot standbys are its
 * learners; warm and cold standbys are registered outside it). A recovered member whose KV store
 * is behind the snapshot its log starts from (a lost backend) restores it.
 */
async function bootstrapOrRestore(
  config: TandemConfig,
  founders: readonly Founder[],
  state: TandemStateMachine,
  recovered: RecoveredState,
  say: (fields: object, message: string) => void,
): Promise<void> {
  const storage = recovered.storage;
  if (recovered.fresh && config.cluster.state === 'new') {
    if (state.appliedIndex() === 0) state.bootstrap();
    const founding = foundingConfig(founders);
    RawNode.bootstrap(storage, founding.voters, state.snapshot(), founding.learners);
    await new Promise<void>((resolve, reject) =>
      recovered.persistence.save(
        {
          hardState: storage.initialState().hardState,
          entries: [],
          snapshot: storage.snapshot(),
          mustSync: true,
        },
        (e) => (e === null ? resolve() : reject(e)),
      ),
    );
    say({}, 'bootstrapped a new cluster');
    return;
  }
  const snap = recovered.snapshot;
  if (snap !== null && snap.metadata.index > state.appliedIndex() && snap.data.length > 0) {
    state.restore(snap);
  }
  // The KV store may be ahead of the WAL's commit index: a commit index alone is written only
  // with the next synced save, so a crash loses it; the leader tells it again, and entries the
  // store holds are not applied twice.
  say(
    {
      snapshotIndex: snap?.metadata.index ?? 0,
      walCommitIndex: storage.initialState().hardState.commit,
      walLastIndex: storage.lastIndex(),
      kvAppliedIndex: state.appliedIndex(),
    },
    'recovered durable state',
  );
}

function explainRecoveryError(
  error: unknown,
  config: TandemConfig,
  clusterId: bigint,
  selfId: NodeId,
): unknown {
  if (!(error instanceof StorageError) || error.code !== 'WAL_IDENTITY_MISMATCH') return error;
  return new Error(
    `data directory ${config.dataDir} belongs to another cluster or member than this config ` +
      `describes (cluster ${clusterId.toString(16)}, member ${selfId.toString(16)}); ` +
      `check cluster.token, name and peers, or use an empty dataDir: ${error.message}`,
  );
}

function peerTlsFiles(config: TandemConfig) {
  const tls = config.tls.peer;
  return tls === null ? undefined : { caFile: tls.ca, certFile: tls.cert, keyFile: tls.key };
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
