/**
 * The etcd face of a member: implements the API edge's EtcdBackend (contract.ts) over the member
 * loop and the replicated state machine.
 *
 * - Writes (put, delete, txn, compact, lease grant/revoke, membership) are validated as etcd does,
 *   proposed through Raft, and answered with the result of applying them on this member.
 * - Reads wait for the barrier their consistency asks for (ReadIndex, lease, none), then read the
 *   local state: a read on a follower is linearizable without moving data through the leader.
 * - Every client request is refused unless this member serves clients (role.ts), asked before it
 *   starts and again before a read that waited is answered.
 * - Lease keep-alives live only on the leader's lessor (deadlines are not replicated); a follower
 *   hands them to the leader through the forwarder, as etcd forwards them over HTTP.
 */
import { addedMemberId } from '../cluster/ids.js';
import type { ManualOp } from '../cluster/policy.js';
import { encodeAttributes, type MemberInfo } from '../cluster/registry.js';
import type { Clock } from '../io/clock.js';
import type {
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KvRequest,
  KvResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from '../kv/api-types.js';
import { KvError } from '../kv/errors.js';
import { LeaseError, LeaseErrorCode } from '../kv/lease/errors.js';
import { LeaseIdGenerator } from '../kv/lease/lease-id.js';
import { LEASES_MAX_DEFAULT } from '../kv/lease/limits.js';
import { isReadOnlyTxn } from '../kv/mvcc/execute.js';
import {
  QUOTA_BYTES_DEFAULT,
  type QuotaRequest,
  quotaAvailable,
  quotaCostBytes,
} from '../kv/quota.js';
import type { LeaseId } from '../kv/types.js';
import type { WatchStream } from '../kv/watch/stream.js';
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  NONE,
  type NodeId,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import type { AckAll } from './ack-all.js';
import {
  AlarmAction,
  type AlarmMember,
  AlarmType,
  alarmStatusText,
  isAlarmType,
} from './alarms.js';
import { MemberAuth } from './auth.js';
import type {
  AlarmOp,
  Member as ApiMember,
  BackendHashResult,
  EtcdBackend,
  HashKvResult,
  Header,
  LeaderForwarder,
  LeaseGrantResult,
  LeaseTimeToLiveResult,
  MemberStatus,
  ReadConsistency,
  RequestOptions,
  SnapshotStream,
  WithHeader,
} from './contract.js';
import { ServerError } from './errors.js';
import { ConditionWaiters, MemberEvents } from './events.js';
import type { RedundancyDriver } from './redundancy.js';
import type { RoleTruth } from './role.js';
import {
  type CommandResult,
  encodeAlarm,
  encodeAuthorized,
  encodeDeduped,
  encodeLeaseCheckpoints,
  encodeLeaseGrant,
  encodeLeaseRevoke,
  encodeMemberPeerUrls,
  type TandemMember,
  type TandemStateMachine,
} from './tandem-state-machine.js';

export const SERVER_VERSION = '3.5.0';
/** A learner may be promoted once it holds this share of the leader's log (etcd's rule). */
export const LEARNER_READY_PERCENT = 90;
export const LEARNERS_MAX = 7;
/**
 * etcd's monitorLeader (maxNoLeaderCnt): streams that require a leader are cancelled once the
 * member has had none for this many election timeouts (reconnecting costs more than waiting).
 */
export const NO_LEADER_STREAM_CANCEL_ELECTIONS = 3;
/** MoveLeader gives up after this many election timeouts. */
const MOVE_LEADER_TIMEOUT_ELECTIONS = 2;

export interface EtcdFacadeOptions {
  readonly member: TandemMember;
  readonly state: TandemStateMachine;
  readonly clock: Clock;
  readonly events: MemberEvents;
  readonly role: RoleTruth;
  readonly ackAll: AckAll;
  readonly clusterId: bigint;
  readonly electionTimeoutMs: number;
  readonly forwarder?: LeaderForwarder;
  /** The leader's redundancy policy (null without one). */
  readonly redundancy: RedundancyDriver | null;
  /** Bytes of the backend on disk, for Status and the quota (0 when unknown). */
  readonly dbSizeBytes?: () => number;
  /** Bytes of the backend's pages holding data; default: dbSizeBytes (all of the file). */
  readonly dbSizeInUseBytes?: () => number;
  /** etcd's --quota-backend-bytes: growing writes are refused once the backend reaches it. */
  readonly quotaBackendBytes?: number;
  /** limits.leasesMax: carried in each LeaseGrant this member proposes (default 1,000,000). */
  readonly leasesMax?: number;
  /**
   * Gives the backend's free space back (etcd's Defragment); called while the member applies
   * nothing (Member.pauseApply). None: the backend has no free space to give back (memory).
   */
  readonly defragment?: () => Promise<void>;
  readonly bugs?: ReadonlySet<string>;
}

export class EtcdFacade implements EtcdBackend {
  readonly auth: MemberAuth;
  private readonly o: EtcdFacadeOptions;
  private readonly member: TandemMember;
  private readonly state: TandemStateMachine;
  private readonly role: RoleTruth;
  private readonly memberId: bigint;
  private readonly leaseIds: LeaseIdGenerator;
  /** Requests waiting for a leader change (MoveLeader). */
  private readonly leaderWaiters = new ConditionWaiters();
  /** When the latest completed read barrier started (ms): the state is fresh as of then. */
  private freshAsOfMs = Number.NEGATIVE_INFINITY;
  private readsLocal = 0;
  private readsBarrier = 0;
  /** Since when (member clock, ms) this member has known no leader; null while it knows one. */
  private leaderlessSinceMs: number | null;
  private readonly leaderLostListeners = new Set<() => void>();
  /** Resolves when the first role check completes (made on the first call that waits for it). */
  private firstRoleCheck: Promise<void> | null = null;

  constructor(options: EtcdFacadeOptions) {
    this.o = options;
    this.member = options.member;
    this.state = options.state;
    this.role = options.role;
    this.memberId = BigInt(options.member.id);
    this.leaseIds = new LeaseIdGenerator(options.member.id, options.clock.wallNow());
    this.leaderlessSinceMs = options.member.leader === NONE ? options.clock.now() : null;
    this.auth = new MemberAuth({
      member: options.member,
      state: options.state,
      clock: options.clock,
      propose: (command, signal) => {
        this.role.refuseUnlessServing();
        return this.propose(command, signal);
      },
      barrier: async (signal) => {
        await this.clientReadBarrier({ kind: 'linearizable' }, signal);
      },
    });
    MemberEvents.add(options.events.softState, () => {
      this.leaderWaiters.check();
      this.noteLeader();
    });
    MemberEvents.add(options.events.tick, () => {
      this.leaderWaiters.expire(options.clock.now());
      this.checkLeaderLost();
      // Expired simple tokens go a bounded batch per tick (a used one is checked on use too).
      options.state.simpleTokens.sweep(options.clock.now());
    });
  }

  close(): void {
    this.leaderWaiters.failAll(new ServerError('STOPPED', 'etcdserver: server stopped'));
    this.o.ackAll.close();
    this.state.watchHub.close();
  }

  /** `tandem member promote|demote|standby NAME` on the leader (see RedundancyDriver.manual). */
  manualMemberOp(op: ManualOp, name: string): Promise<string> {
    if (this.o.redundancy === null) {
      return Promise.reject(new ServerError('UNHEALTHY', 'tandem: no redundancy policy here'));
    }
    return this.o.redundancy.manual(op, name);
  }

  // -------------------------------------------------------------------------------------------
  // Header

  header(): Header {
    return {
      clusterId: this.o.clusterId,
      memberId: this.memberId,
      revision: this.state.revision(),
      raftTerm: this.member.term,
    };
  }

  private headerAt(revision: number): Header {
    return { ...this.header(), revision };
  }

  // -------------------------------------------------------------------------------------------
  // KV

  async range(req: RangeRequest, opts: RequestOptions): Promise<WithHeader<RangeResponse>> {
    const consistency = req.serializable ? { kind: 'serializable' as const } : opts.consistency;
    await this.clientReadBarrier(consistency, opts.signal);
    // A slice per event-loop turn: a range over a large store does not stall the member.
    const clock = this.o.clock;
    const response = await this.state.rangeInSlices(
      req,
      () => new Promise((resolve) => clock.defer(resolve)),
    );
    return { header: this.headerAt(response.header.revision), response };
  }

  async put(req: PutRequest, opts: RequestOptions): Promise<WithHeader<PutResponse>> {
    this.checkQuota({ type: 'put', request: req });
    const r = await this.proposeKv({ type: 'put', request: req }, opts);
    assert(r.type === 'put', `a put answered as ${r.type}`);
    return { header: this.headerAt(r.response.header.revision), response: r.response };
  }

  async deleteRange(
    req: DeleteRangeRequest,
    opts: RequestOptions,
  ): Promise<WithHeader<DeleteRangeResponse>> {
    const r = await this.proposeKv({ type: 'deleteRange', request: req }, opts);
    assert(r.type === 'deleteRange', `a delete answered as ${r.type}`);
    return { header: this.headerAt(r.response.header.revision), response: r.response };
  }

  async txn(req: TxnRequest, opts: RequestOptions): Promise<WithHeader<TxnResponse>> {
    if (isReadOnlyTxn(req)) {
      // As etcd: a read-only txn is a read (a barrier, then the local state), never a log entry.
      await this.clientReadBarrier(opts.consistency, opts.signal);
      const clock = this.o.clock;
      const response = await this.state.readTxnInSlices(
        req,
        () => new Promise((resolve) => clock.defer(resolve)),
      );
      return { header: this.headerAt(response.header.revision), response };
    }
    this.checkQuota({ type: 'txn', request: req });
    const r = await this.proposeKv({ type: 'txn', request: req }, opts);
    assert(r.type === 'txn', `a txn answered as ${r.type}`);
    return { header: this.headerAt(r.response.header.revision), response: r.response };
  }

  async compact(
    req: CompactionRequest,
    opts: RequestOptions,
  ): Promise<WithHeader<CompactionResponse>> {
    const r = await this.proposeKv({ type: 'compaction', request: req }, opts);
    assert(r.type === 'compaction', `a compaction answered as ${r.type}`);
    return { header: this.headerAt(r.response.header.revision), response: r.response };
  }

  private async proposeKv(req: KvRequest, opts: RequestOptions): Promise<KvResponse> {
    this.role.refuseUnlessServing();
    let command = this.state.encodeKv(req); // etcd's validation before the log: throws KvError
    if (opts.requestId !== undefined && req.type !== 'compaction' && req.type !== 'range') {
      command = encodeDeduped(opts.requestId, command);
    }
    const { result, index } = await this.propose(withAuth(command, opts), opts.signal);
    switch (result.kind) {
      case 'applied':
        if (opts.ack === 'all') await this.o.ackAll.awaitWrite(index);
        return result.response;
      case 'rejected':
      case 'authRejected':
        throw result.error;
      default:
        return unexpected(result);
    }
  }

  /**
   * etcd's quotaKVServer / quotaLeaseServer: a growing request that would take the backend to
   * its quota is refused with NO_SPACE, and this member raises its NOSPACE alarm through the log
   * (once: not again while the alarm is up), which caps every member (tandem-state-machine.ts).
   */
  private checkQuota(req: QuotaRequest): void {
    this.role.refuseUnlessServing(); // a standby says so, whatever its size
    const sizeBytes = this.o.dbSizeBytes?.() ?? 0;
    const quotaBytes = this.o.quotaBackendBytes ?? QUOTA_BYTES_DEFAULT;
    if (quotaAvailable(sizeBytes, quotaCostBytes(req), quotaBytes)) return;
    const raised = this.state.alarms(AlarmType.NoSpace).some((m) => m.memberId === this.memberId);
    if (!raised) {
      // Its outcome does not matter here: the write is refused either way, as in etcd.
      this.member.propose(
        encodeAlarm(AlarmAction.Activate, this.memberId, AlarmType.NoSpace),
        () => {},
      );
    }
    throw new KvError('NO_SPACE');
  }

  // -------------------------------------------------------------------------------------------
  // Watch

  openWatchStream(onReadable: () => void): WatchStream {
    this.role.refuseUnlessServing();
    return this.state.watchHub.openStream(onReadable);
  }

  // -------------------------------------------------------------------------------------------
  // Leases

  async leaseGrant(
    id: LeaseId,
    ttlSeconds: number,
    opts: RequestOptions,
  ): Promise<LeaseGrantResult> {
    this.role.refuseUnlessServing();
    this.checkQuota({ type: 'leaseGrant' });
    const chosen = id === 0n ? this.leaseIds.next() : id;
    const leasesMax = this.o.leasesMax ?? LEASES_MAX_DEFAULT;
    const { result } = await this.propose(
      encodeLeaseGrant(chosen, ttlSeconds, leasesMax),
      opts.signal,
    );
    if (result.kind === 'leaseGranted') return result.grant;
    if (result.kind === 'leaseRejected' || result.kind === 'rejected') throw result.error;
    return unexpected(result);
  }

  async leaseRevoke(id: LeaseId, opts: RequestOptions): Promise<void> {
    this.role.refuseUnlessServing();
    const { result } = await this.propose(withAuth(encodeLeaseRevoke(id), opts), opts.signal);
    if (result.kind === 'leaseRevoked') return;
    if (result.kind === 'leaseRejected' || result.kind === 'authRejected') throw result.error;
    unexpected(result);
  }

  async leaseKeepAlive(id: LeaseId, _opts: RequestOptions): Promise<number> {
    this.role.refuseUnlessServing();
    if (!this.member.isLeader) {
      return this.forwarder().leaseKeepAlive(this.leaderClientUrls(), id);
    }
    try {
      const renewed = this.state.lessor.keepAlive(id, this.o.clock.now());
      if (renewed.checkpoint !== null) {
        // Clear a stale checkpoint everywhere; the keep-alive answers without waiting for it.
        this.member.propose(encodeLeaseCheckpoints([renewed.checkpoint]), () => {});
      }
      return renewed.ttlSeconds;
    } catch (error) {
      if (error instanceof LeaseError && error.code === LeaseErrorCode.Expired) {
        throw new LeaseError(LeaseErrorCode.NotFound, id);
      }
      throw error;
    }
  }

  async leaseTimeToLive(
    id: LeaseId,
    withKeys: boolean,
    opts: RequestOptions,
  ): Promise<LeaseTimeToLiveResult> {
    this.role.refuseUnlessServing();
    if (!this.member.isLeader) {
      // Only the TTL is the leader's; the attached keys are replicated state, read here (the
      // leader's API would ask the forwarding member for credentials it does not have).
      const ttl = await this.forwarder().leaseTimeToLive(this.leaderClientUrls(), id, false);
      return withKeys && ttl.ttlSeconds !== -1 ? { ...ttl, keys: this.auth.leaseKeys(id) } : ttl;
    }
    await this.clientReadBarrier({ kind: 'linearizable' }, opts.signal);
    try {
      const ttl = this.state.lessor.timeToLive(id, this.o.clock.now(), withKeys);
      return {
        id,
        ttlSeconds: ttl.remainingTtlSeconds,
        grantedTtlSeconds: ttl.grantedTtlSeconds,
        keys: ttl.keys,
      };
    } catch (error) {
      if (error instanceof LeaseError && error.code === LeaseErrorCode.NotFound) {
        return { id, ttlSeconds: -1, grantedTtlSeconds: 0, keys: [] };
      }
      throw error;
    }
  }

  async leaseLeases(opts: RequestOptions): Promise<readonly LeaseId[]> {
    await this.clientReadBarrier(opts.consistency, opts.signal);
    return this.state.lessor.leases();
  }

  private forwarder(): LeaderForwarder {
    const f = this.o.forwarder;
    if (f === undefined) throw new ServerError('NOT_LEADER', 'etcdserver: not leader');
    return f;
  }

  leaderClientUrls(): readonly string[] {
    return leaderClientUrls(this.member, this.state);
  }

  // -------------------------------------------------------------------------------------------
  // Cluster

  async memberList(linearizable: boolean, opts: RequestOptions): Promise<readonly ApiMember[]> {
    if (linearizable) await this.readBarrier({ kind: 'linearizable' }, opts.signal);
    return this.apiMembers();
  }

  async memberAdd(
    peerUrls: readonly string[],
    isLearner: boolean,
    opts: RequestOptions,
  ): Promise<{ member: ApiMember; members: readonly ApiMember[] }> {
    await this.readBarrier({ kind: 'linearizable' }, opts.signal);
    for (const url of peerUrls) {
      if (this.state.members().some((m) => m.peerUrls.includes(url))) {
        throw new ServerError('PEER_URL_EXISTS', 'etcdserver: Peer URLs already exists');
      }
    }
    if (isLearner && this.state.members().filter((m) => m.isLearner).length >= LEARNERS_MAX) {
      throw new ServerError('TOO_MANY_LEARNERS', 'etcdserver: too many learner members in cluster');
    }
    const id = addedMemberId(peerUrls, this.o.clock.wallNow());
    if (!isLearner) this.checkReconfigQuorum({ add: id });
    const change: ConfChange = {
      transition: ConfChangeTransition.Auto,
      changes: [
        { type: isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode, nodeId: id },
      ],
      context: encodeAttributes({ name: '', peerUrls, clientUrls: [] }),
    };
    await this.proposeConfChange(change, opts.signal);
    const added = this.state.member(id);
    // Applied here before the proposal resolved: the registry records every added member.
    assert(added !== undefined, `member ${id.toString(16)} added but not registered`);
    return { member: toApiMember(added), members: this.apiMembers() };
  }

  /**
   * etcd's --strict-reconfig-check: a voter added or removed through the Cluster API must leave
   * a configuration whose quorum is made of members that are up, as the leader's failure
   * detector records them in the registry (the view the redundancy planner guards with): an
   * added voter counts as down until it runs, a removed one is gone, this member is up.
   */
  private checkReconfigQuorum(change: { add?: NodeId; remove?: NodeId }): void {
    const current = this.member.configuration.voters;
    // etcd's exception: a second voter for a one-member cluster (restoring from a snapshot).
    if (change.add !== undefined && current.length === 1 && current[0] === this.member.id) return;
    const voters = current.filter((v) => v !== change.remove);
    if (change.add !== undefined && !voters.includes(change.add)) voters.push(change.add);
    const up = voters.filter(
      (v) =>
        v === this.member.id ||
        (v !== change.add && (this.state.member(v)?.health ?? 'unreachable') !== 'unreachable'),
    ).length;
    if (up < Math.floor(voters.length / 2) + 1) {
      throw new ServerError(
        'NOT_ENOUGH_STARTED_MEMBERS',
        'etcdserver: re-configuration failed due to not enough started members',
      );
    }
  }

  async memberRemove(id: bigint, opts: RequestOptions): Promise<readonly ApiMember[]> {
    await this.readBarrier({ kind: 'linearizable' }, opts.signal);
    const nodeId = this.knownMember(id).id;
    this.checkReconfigQuorum({ remove: nodeId });
    await this.proposeConfChange(
      {
        transition: ConfChangeTransition.Auto,
        changes: [{ type: ConfChangeType.RemoveNode, nodeId }],
        context: new Uint8Array(0),
      },
      opts.signal,
    );
    return this.apiMembers();
  }

  async memberUpdate(
    id: bigint,
    peerUrls: readonly string[],
    opts: RequestOptions,
  ): Promise<readonly ApiMember[]> {
    await this.readBarrier({ kind: 'linearizable' }, opts.signal);
    const nodeId = this.knownMember(id).id;
    for (const url of peerUrls) {
      const owner = this.state.members().find((m) => m.peerUrls.includes(url));
      if (owner !== undefined && owner.id !== nodeId) {
        throw new ServerError('PEER_URL_EXISTS', 'etcdserver: Peer URLs already exists');
      }
    }
    await this.propose(encodeMemberPeerUrls(nodeId, [...peerUrls]), opts.signal);
    return this.apiMembers();
  }

  async memberPromote(id: bigint, opts: RequestOptions): Promise<readonly ApiMember[]> {
    await this.readBarrier({ kind: 'linearizable' }, opts.signal);
    const target = this.knownMember(id);
    if (!target.isLearner) {
      throw new ServerError('NOT_LEARNER', 'etcdserver: can only promote a learner member');
    }
    if (!this.member.isLeader) throw new ServerError('NOT_LEADER', 'etcdserver: not leader');
    const progress = this.member.status().progress.get(target.id);
    const commit = this.member.commitIndex;
    if (progress === undefined || progress.match * 100 < commit * LEARNER_READY_PERCENT) {
      throw new ServerError(
        'LEARNER_NOT_READY',
        'etcdserver: can only promote a learner member which is in sync with leader',
      );
    }
    await this.proposeConfChange(
      {
        transition: ConfChangeTransition.Auto,
        changes: [{ type: ConfChangeType.AddNode, nodeId: target.id }],
        context: new Uint8Array(0),
      },
      opts.signal,
    );
    return this.apiMembers();
  }

  private knownMember(id: bigint): MemberInfo {
    const m = id <= BigInt(Number.MAX_SAFE_INTEGER) ? this.state.member(Number(id)) : undefined;
    if (m === undefined) throw new ServerError('MEMBER_NOT_FOUND', 'etcdserver: member not found');
    return m;
  }

  private apiMembers(): ApiMember[] {
    return this.state.members().map(toApiMember);
  }

  // -------------------------------------------------------------------------------------------
  // Maintenance

  async status(): Promise<MemberStatus> {
    const self = this.state.member(this.member.id);
    const dbSize = this.o.dbSizeBytes?.() ?? 0;
    // As etcd: no leader, then every raised alarm, in `errors`.
    const errors = this.member.leader === NONE ? ['etcdserver: no leader'] : [];
    for (const m of this.state.alarms()) errors.push(alarmStatusText(m));
    return {
      version: SERVER_VERSION,
      dbSize,
      dbSizeInUse: this.o.dbSizeInUseBytes?.() ?? dbSize,
      leader: BigInt(this.member.leader),
      raftIndex: this.member.commitIndex,
      raftTerm: this.member.term,
      raftAppliedIndex: this.member.appliedIndex,
      // Outside the leader's configuration (see RoleTruth), whatever a stale registry says.
      isLearner: this.role.selfRole().source === 'leader' || (self?.isLearner ?? false),
      errors,
    };
  }

  hasLeader(): boolean {
    return this.member.leader !== NONE;
  }

  /**
   * Readiness (the admin port's GET /ready): whether a client request sent here now is answered,
   * served here or forwarded to a member that serves, instead of refused. That needs a known
   * leader, and this member serving or knowing a member that does: in its first seconds a member
   * has neither confirmed its role nor learnt another's client URL, and refuses clients.
   */
  clientReadiness(): { readonly ready: boolean; readonly reason: string } {
    if (!this.hasLeader()) return { ready: false, reason: 'no leader' };
    if (this.role.selfRole().serves || this.role.servingClientUrls().length > 0) {
      return { ready: true, reason: '' };
    }
    return {
      ready: false,
      reason: 'role not yet confirmed with the leader, and no member serving clients known',
    };
  }

  assertServing(): void {
    this.role.refuseUnlessServing();
  }

  roleCheckPending(): Promise<void> | null {
    const self = this.role.selfRole();
    if (self.source !== 'unconfirmed' || self.role === 'standby') return null;
    // One promise for every waiting call: the listener list stays one long.
    this.firstRoleCheck ??= new Promise((resolve) => this.role.firstConfirmed.push(resolve));
    return this.firstRoleCheck;
  }

  servingClientUrls(): readonly string[] {
    return this.role.servingClientUrls();
  }

  onLeaderLost(listener: () => void): () => void {
    this.leaderLostListeners.add(listener);
    return () => this.leaderLostListeners.delete(listener);
  }

  private noteLeader(): void {
    if (this.member.leader !== NONE) this.leaderlessSinceMs = null;
    else this.leaderlessSinceMs ??= this.o.clock.now();
  }

  /** etcd's monitorLeader: fires the listeners once the member has been leaderless too long. */
  private checkLeaderLost(): void {
    this.noteLeader();
    if (this.leaderlessSinceMs === null || this.leaderLostListeners.size === 0) return;
    const spanMs = NO_LEADER_STREAM_CANCEL_ELECTIONS * this.o.electionTimeoutMs;
    if (this.o.clock.now() - this.leaderlessSinceMs < spanMs) return;
    const listeners = [...this.leaderLostListeners];
    this.leaderLostListeners.clear();
    for (const listener of listeners) listener();
  }

  async hash(): Promise<BackendHashResult> {
    const clock = this.o.clock;
    return this.state.hashBackendInSlices(() => new Promise((resolve) => clock.defer(resolve)));
  }

  async alarm(
    op: AlarmOp,
    memberId: bigint,
    alarm: number,
    opts: RequestOptions,
  ): Promise<readonly AlarmMember[]> {
    assert(isAlarmType(alarm), `alarm type ${alarm}`);
    if (op === 'get') {
      await this.readBarrier({ kind: 'linearizable' }, opts.signal);
      return this.state.alarms(alarm);
    }
    const action = op === 'activate' ? AlarmAction.Activate : AlarmAction.Deactivate;
    const { result } = await this.propose(encodeAlarm(action, memberId, alarm), opts.signal);
    if (result.kind === 'alarm') return result.alarms;
    return unexpected(result);
  }

  /**
   * etcd's Defragment: the backend is copied without its free pages while this member applies
   * nothing (its Ready loop holds; reads and raft's ticks go on), then swapped in.
   */
  async defragment(): Promise<void> {
    const defragment = this.o.defragment;
    if (defragment === undefined) return;
    const resume = await this.member.pauseApply();
    try {
      await defragment();
    } finally {
      resume();
    }
  }

  async hashKv(revision: number): Promise<HashKvResult> {
    // A slice per event-loop turn: a large store is hashed while the member goes on serving.
    const clock = this.o.clock;
    const h = await this.state.hashInSlices(
      () => new Promise((resolve) => clock.defer(resolve)),
      revision,
    );
    return { hash: h.hash, compactRevision: h.compactRevision, hashRevision: h.revision };
  }

  async moveLeader(targetId: bigint, opts: RequestOptions): Promise<void> {
    if (!this.member.isLeader) throw new ServerError('NOT_LEADER', 'etcdserver: not leader');
    const target =
      targetId <= BigInt(Number.MAX_SAFE_INTEGER) ? this.state.member(Number(targetId)) : undefined;
    // etcd: a transferee that is no member, or a learner, is a bad one (FailedPrecondition).
    if (target === undefined || target.isLearner) {
      throw new ServerError('BAD_LEADER_TRANSFEREE', 'etcdserver: bad leader transferee');
    }
    if (target.id === this.member.id) return;
    if (opts.signal?.aborted) throw new ServerError('CANCELED', 'context canceled');
    this.member.transferLeader(target.id);
    await this.leaderWaiters.wait(
      () => this.member.leader === target.id,
      this.o.clock.now() + this.o.electionTimeoutMs * MOVE_LEADER_TIMEOUT_ELECTIONS,
      () =>
        new ServerError('TIMEOUT', 'etcdserver: request timed out, leader transfer took too long'),
      () => new ServerError('TOO_MANY_REQUESTS', 'etcdserver: too many requests'),
    );
  }

  /**
   * A point-in-time copy of the keys' history and the leases in etcd's format (a bbolt file,
   * etcd-snapshot.ts), streamed page by page from a read view as the client reads it, never
   * packed in memory at once.
   */
  async snapshot(): Promise<SnapshotStream> {
    const snap = this.state.streamEtcdSnapshot();
    return {
      header: this.headerAt(snap.revision),
      // Known once the file is planned, which is before its first bytes are sent.
      get sizeBytes() {
        return snap.sizeBytes;
      },
      chunks: snap.chunks,
    };
  }

  /** The leader's half of a follower's ack=all write (the API's Ack service). */
  awaitAllVoters(index: number): Promise<void> {
    return this.o.ackAll.awaitAllVoters(index);
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  /**
   * Bounded staleness served locally: a read barrier started at `freshAsOfMs` has completed (its
   * index is applied), so this member's state is at least as new as the cluster's was then, and
   * at most `now - freshAsOfMs` stale. Only this member's clock and a round trip count: "heard
   * from the leader recently" is no bound, since a message may have travelled for any time
   * (40 ms between zones; seconds in a stalled TCP buffer) before it was heard.
   */
  freshWithin(maxStalenessMs: number): boolean {
    return this.o.clock.now() - this.freshAsOfMs <= maxStalenessMs;
  }

  /** How this member served reads: from local state at once, or after a read barrier. */
  readCounters(): { readonly local: number; readonly barrier: number } {
    return { local: this.readsLocal, barrier: this.readsBarrier };
  }

  /**
   * A client read's barrier: refused if this member stopped serving while it waited (a demotion
   * it applied while catching up to the read index): the role is checked when the read is
   * answered, not only when it arrived (Status and MemberList answer on standbys: they use
   * `readBarrier` directly).
   */
  private async clientReadBarrier(
    consistency: ReadConsistency,
    signal?: AbortSignal,
  ): Promise<number> {
    this.role.refuseUnlessServing();
    const index = await this.readBarrier(consistency, signal);
    // INJECTED BUG (simulator only): the role checked only when the read arrived.
    if (this.o.bugs?.has('role-checked-on-arrival') !== true) this.role.refuseUnlessServing();
    return index;
  }

  /** Waits for the barrier `consistency` asks for; resolves with the read index. */
  private async readBarrier(consistency: ReadConsistency, signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) throw new ServerError('CANCELED', 'context canceled');
    if (
      consistency.kind === 'serializable' ||
      (consistency.kind === 'bounded' && this.freshWithin(consistency.maxStalenessMs))
    ) {
      this.readsLocal++;
      return this.member.appliedIndex;
    }
    this.readsBarrier++;
    const startedMs = this.o.clock.now();
    const index = await new Promise<number>((resolve, reject) => {
      const done = (error: Error | null, index?: number): void => {
        if (error !== null) reject(error);
        else resolve(index ?? 0);
      };
      if (consistency.kind === 'lease') this.member.leaseReadBarrier(done);
      else this.member.readBarrier(done); // bounded and not known fresh: a linearizable barrier
    });
    // Applied up to a read index confirmed after startedMs: fresh as of startedMs.
    assert(index <= this.member.appliedIndex, 'barrier index applied');
    this.freshAsOfMs = Math.max(this.freshAsOfMs, startedMs);
    return index;
  }

  // -------------------------------------------------------------------------------------------
  // Proposals

  /**
   * Proposes `command`; resolves with its result and an index at or after its entry's (the
   * applied index when the result arrived: the callback runs while the entry is applied).
   */
  private propose(
    command: Uint8Array,
    signal?: AbortSignal,
  ): Promise<{ readonly result: CommandResult; readonly index: number }> {
    if (signal?.aborted) return Promise.reject(new ServerError('CANCELED', 'context canceled'));
    return new Promise((resolve, reject) => {
      this.member.propose(command, (error, result) => {
        if (error !== null) reject(error);
        else resolve({ result: result!, index: this.member.appliedIndex });
      });
    });
  }

  private proposeConfChange(change: ConfChange, signal?: AbortSignal): Promise<ConfState> {
    if (signal?.aborted) return Promise.reject(new ServerError('CANCELED', 'context canceled'));
    return new Promise((resolve, reject) => {
      this.member.proposeConfChange(change, (error, confState) =>
        error === null ? resolve(confState!) : reject(error),
      );
    });
  }
}

/** The leader's client URLs as the registry records them, or NO_LEADER. */
export function leaderClientUrls(
  member: TandemMember,
  state: TandemStateMachine,
): readonly string[] {
  const lead = member.leader;
  if (lead === NONE) throw new ServerError('NO_LEADER', 'etcdserver: no leader');
  const urls = state.member(lead)?.clientUrls ?? [];
  if (urls.length === 0) throw new ServerError('NO_LEADER', 'etcdserver: no leader');
  return urls;
}

/** A client's command, wrapped with the credentials the edge checked it under (if any). */
function withAuth(command: Uint8Array, opts: RequestOptions): Uint8Array {
  return opts.auth === undefined ? command : encodeAuthorized(opts.auth, command);
}

/**
 * A result no proposer of this kind can get: 'skipped' is an entry applied in an earlier
 * incarnation (never one proposed in this one), the other kinds answer other commands.
 */
function unexpected(result: CommandResult): never {
  assert(false, `unexpected apply result ${result.kind}`);
}

function toApiMember(m: MemberInfo): ApiMember {
  return {
    id: BigInt(m.id),
    name: m.name,
    peerUrls: m.peerUrls,
    clientUrls: m.clientUrls,
    isLearner: m.isLearner,
  };
}
