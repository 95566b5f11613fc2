/**
 * The etcd face of a member: implements the API edge's EtcdBackend over the member loop and the
 * replicated state machine.
 *
 * - Writes (put, delete, txn, compact, lease grant/revoke, membership) are validated as etcd does,
 *   proposed through Raft, and answered with the result of applying them on this member.
 * - Reads wait for the barrier their consistency asks for (ReadIndex, lease, none), then read the
 *   local state: a read on a follower is linearizable without moving data through the leader.
 * - Lease keep-alives live only on the leader's lessor (deadlines are not replicated); a follower
 *   hands them to the leader through an injected forwarder, as etcd forwards them over HTTP.
 * - The leader's duties run on a coarse timer: revoking expired leases and checkpointing long ones
 *   through the log, ticking the watch hub.
 */
import { createHash } from 'node:crypto';
import type {
  Member as ApiMember,
  EtcdBackend,
  HashKvResult,
  Header,
  LeaseGrantResult,
  LeaseTimeToLiveResult,
  MemberStatus,
  RequestOptions,
  SnapshotStream,
  WithHeader,
} from '../api/backend.js';
import type { RegistryCommand, Role, StandbyMode } from '../cluster/commands.js';
import type { ManualOp, RedundancyPolicy } from '../cluster/policy.js';
import {
  decodeRoleRecord,
  encodeAttributes,
  encodeRoleRecord,
  type MemberInfo,
  type Placement,
  type RoleRecord,
} from '../cluster/registry.js';
import type { Clock, TimerHandle } from '../io/clock.js';
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
import { LeaseError, LeaseErrorCode } from '../kv/lease/errors.js';
import { LeaseIdGenerator } from '../kv/lease/lease-id.js';
import type { LeaseId } from '../kv/types.js';
import type { WatchStream } from '../kv/watch/stream.js';
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  NONE,
  StateType,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import { ServerError } from './errors.js';
import type { Member } from './member.js';
import { POLICY_INTERVAL_MS, type PolicyEvent, RedundancyDriver } from './redundancy.js';
import {
  type CommandResult,
  encodeLeaseCheckpoints,
  encodeLeaseGrant,
  encodeLeaseRevoke,
  encodeMemberAttributes,
  encodeMemberPeerUrls,
  encodeRegistryEntry,
  type TandemStateMachine,
} from './tandem-state-machine.js';

export const SERVER_VERSION = '3.5.0';
/** How often the leader looks for expired leases and checkpoints (etcd: 500 ms). */
export const LEASE_DUTY_INTERVAL_MS = 500;
/** How often the watch hub catches slow watchers up. */
export const WATCH_TICK_INTERVAL_MS = 50;
/** A learner may be promoted once it holds this share of the leader's log (etcd's rule). */
export const LEARNER_READY_PERCENT = 90;
export const LEARNERS_MAX = 7;
/** How often an ack=all write checks whether every voter has persisted it. */
export const ACK_ALL_POLL_MS = 10;
/** An ack=all write fails with WRITE_ACK_TIMEOUT after this long by default. */
export const ACK_ALL_TIMEOUT_MS_DEFAULT = 5_000;
/** A standby's refusal names at most this many members that do serve clients. */
export const STANDBY_HINT_MEMBERS_MAX = 8;
/** How often, at most, a member whose role is not confirmed starts a role check (a read barrier). */
export const ROLE_CHECK_INTERVAL_MS = LEASE_DUTY_INTERVAL_MS;

/**
 * This member's role as it knows it (`TandemServer.selfRole`), and where that knowledge comes
 * from:
 *   registry     the replicated registry, confirmed current since start-up: a read barrier
 *                completed (this member applied what the leader had committed when it began);
 *   leader       the leader of this member's term probes it as outside its configuration (a warm
 *                or cold standby, possibly demoted and removed while this member was down), and
 *                no read barrier has completed since: the leader's record of it, in the probe;
 *   unconfirmed  neither yet (just started): the local registry may be stale.
 */
export interface SelfRole {
  readonly role: Role | 'unknown';
  readonly standbyMode: StandbyMode;
  readonly placement: Placement;
  readonly source: 'registry' | 'leader' | 'unconfirmed';
  /** Serves client traffic (KV, Watch, Lease): a confirmed voter or replica. */
  readonly serves: boolean;
}

/** Lease operations a follower cannot answer itself: sent to the leader's client endpoint. */
export interface LeaderForwarder {
  leaseKeepAlive(leaderClientUrls: readonly string[], id: LeaseId): Promise<number>;
  leaseTimeToLive(
    leaderClientUrls: readonly string[],
    id: LeaseId,
    withKeys: boolean,
  ): Promise<LeaseTimeToLiveResult>;
  /**
   * Asks the leader to wait until every voter persisted `index` (ack=all through a follower);
   * rejects with WRITE_ACK_TIMEOUT (the write is committed) after about `timeoutMs`.
   */
  awaitAllVoters?(
    leaderClientUrls: readonly string[],
    index: number,
    timeoutMs: number,
  ): Promise<void>;
}

export interface TandemServerOptions {
  readonly member: Member;
  readonly state: TandemStateMachine;
  readonly clock: Clock;
  readonly clusterId: bigint;
  /** This member's name and client URLs, published through the log once a leader exists. */
  readonly name: string;
  readonly clientUrls: readonly string[];
  readonly electionTimeoutMs: number;
  readonly forwarder?: LeaderForwarder;
  /** Bytes of the backend on disk, for Status (0 when unknown). */
  readonly dbSizeBytes?: () => number;
  /** This member's zone and standby mode, published through the log (registry commands). */
  readonly zone?: string;
  readonly standby?: { readonly mode: StandbyMode; readonly snapshotEveryMs: number };
  /** `replication.preferLeaderZone`: leadership moves to a healthy voter of this zone. */
  readonly preferLeaderZone?: string | null;
  /** The redundancy policy the leader runs; none: no automatic redundancy (tests). */
  readonly policy?: RedundancyPolicy;
  readonly onPolicyEvent?: (event: PolicyEvent) => void;
  /** An ack=all write fails with WRITE_ACK_TIMEOUT after this long (it is committed). */
  readonly ackAllTimeoutMs?: number;
}

export class TandemServer implements EtcdBackend {
  private readonly member: Member;
  private readonly state: TandemStateMachine;
  private readonly clock: Clock;
  private readonly options: TandemServerOptions;
  private readonly memberId: bigint;
  private readonly leaseIds: LeaseIdGenerator;
  private leaseTimer: TimerHandle | null = null;
  private watchTimer: TimerHandle | null = null;
  private policyTimer: TimerHandle | null = null;
  /** The leader's redundancy policy (null without one). */
  readonly redundancy: RedundancyDriver | null;
  private published = false;
  /**
   * Outside the Raft configuration (a warm or cold standby) this member never applies what it
   * proposes, so it cannot see a publication land: each is proposed at most once per leader
   * term (the keys of those proposed in `outsideProposedTerm`), not retried until applied —
   * which would append an entry every request timeout, for ever.
   */
  private readonly outsideProposed = new Set<string>();
  private outsideProposedTerm = 0;
  private publishing = false;
  private wasLeader = false;
  private closed = false;
  /** When the latest completed read barrier started (ms): the state is fresh as of then. */
  private freshAsOfMs = Number.NEGATIVE_INFINITY;
  private readsLocal = 0;
  private readsBarrier = 0;
  /**
   * When the latest completed role check (a read barrier) started (ms): the local registry is
   * as fresh as the cluster's was then. -Infinity until one completes in this incarnation.
   */
  private roleCheckedAsOfMs = Number.NEGATIVE_INFINITY;
  private roleCheckInFlight = false;
  private roleCheckStartedMs = Number.NEGATIVE_INFINITY;
  /** The latest outside probe from the leader of this member's term (null: none since start). */
  private outsideProbe: { readonly atMs: number; readonly record: RoleRecord | null } | null = null;
  /** Whether watch streams were last told this member serves (see syncWatchRefusal). */
  private watchesServing = false;

  constructor(options: TandemServerOptions) {
    this.options = options;
    this.member = options.member;
    this.state = options.state;
    this.clock = options.clock;
    this.memberId = BigInt(options.member.id);
    this.leaseIds = new LeaseIdGenerator(options.member.id, Date.now());
    this.redundancy =
      options.policy === undefined
        ? null
        : new RedundancyDriver({
            member: options.member,
            state: options.state,
            clock: options.clock,
            policy: options.policy,
            electionTimeoutMs: options.electionTimeoutMs,
            preferLeaderZone: options.preferLeaderZone ?? null,
            // Refresh records are read by other processes: wall clock, not the monotonic one.
            wallClockMs: Date.now,
            ...(options.onPolicyEvent === undefined ? {} : { onEvent: options.onPolicyEvent }),
          });
    // As leader: tell each member outside the configuration what the registry says of it. As
    // anyone: hear it, so a member removed while it was down stops serving at once.
    this.member.setOutsideProbePayload((to) => encodeRoleRecord(this.state.member(to)));
    this.member.onOutsideProbe((_leader, _term, payload) => {
      this.outsideProbe = { atMs: this.clock.now(), record: decodeRoleRecord(payload) };
    });
  }

  /** Starts the periodic duties; the member must be started by the caller. */
  start(): void {
    const leaseDuty = (): void => {
      if (this.closed) return;
      this.leaseDuties();
      this.checkRole();
      this.publishSelf();
      this.leaseTimer = this.clock.setTimeout(leaseDuty, LEASE_DUTY_INTERVAL_MS);
    };
    const watchDuty = (): void => {
      if (this.closed) return;
      this.syncWatchRefusal();
      this.state.watchHub.tick(this.clock.now());
      this.watchTimer = this.clock.setTimeout(watchDuty, WATCH_TICK_INTERVAL_MS);
    };
    const policyDuty = (): void => {
      if (this.closed) return;
      this.redundancy?.tick();
      this.policyTimer = this.clock.setTimeout(policyDuty, POLICY_INTERVAL_MS);
    };
    this.leaseTimer = this.clock.setTimeout(leaseDuty, LEASE_DUTY_INTERVAL_MS);
    this.watchTimer = this.clock.setTimeout(watchDuty, WATCH_TICK_INTERVAL_MS);
    if (this.redundancy !== null) {
      this.policyTimer = this.clock.setTimeout(policyDuty, POLICY_INTERVAL_MS);
    }
    // At once: the barrier waits for a leader, and completes as soon as one answers.
    this.checkRole();
  }

  /** `tandem member promote|demote|standby NAME` on the leader (see RedundancyDriver.manual). */
  manualMemberOp(op: ManualOp, name: string): Promise<string> {
    if (this.redundancy === null) {
      return Promise.reject(new ServerError('UNHEALTHY', 'tandem: no redundancy policy here'));
    }
    return this.redundancy.manual(op, name);
  }

  close(): void {
    this.closed = true;
    if (this.leaseTimer !== null) this.clock.clearTimeout(this.leaseTimer);
    if (this.watchTimer !== null) this.clock.clearTimeout(this.watchTimer);
    if (this.policyTimer !== null) this.clock.clearTimeout(this.policyTimer);
    this.state.watchHub.close();
  }

  /** The member loop's soft-state hook: promote or demote the lessor with leadership. */
  onLeadership(isLeader: boolean): void {
    if (isLeader === this.wasLeader) return;
    this.wasLeader = isLeader;
    if (isLeader) this.state.lessor.promote(this.clock.now(), this.options.electionTimeoutMs);
    else this.state.lessor.demote();
  }

  // -------------------------------------------------------------------------------------------
  // Roles

  /**
   * This member's role as it knows it (see SelfRole). The local registry alone is not enough: a
   * voter demoted to a warm or cold standby while it was down is removed from the configuration
   * without ever receiving the change, so its own registry still says "voter". Hence, newest
   * fact first: the leader's outside probe; a registry that says standby (refusing is always
   * safe); nothing confirmed since start-up; else the registry, confirmed by a read barrier.
   */
  selfRole(): SelfRole {
    const self = this.state.member(this.member.id);
    const configuredMode = this.options.standby?.mode ?? 'hot';
    const probe = this.outsideProbe;
    if (probe !== null && probe.atMs >= this.roleCheckedAsOfMs) {
      // Outside the leader's configuration: no log reaches it, whatever the record says.
      return {
        role: probe.record?.role ?? 'unknown',
        standbyMode: probe.record?.standbyMode ?? self?.standbyMode ?? configuredMode,
        placement: 'none',
        source: 'leader',
        serves: false,
      };
    }
    const confirmed = Number.isFinite(this.roleCheckedAsOfMs);
    if (self === undefined || (!confirmed && self.role !== 'standby')) {
      return {
        role: 'unknown',
        standbyMode: self?.standbyMode ?? configuredMode,
        placement: self?.placement ?? 'none',
        source: confirmed ? 'registry' : 'unconfirmed',
        serves: false,
      };
    }
    const known: SelfRole = {
      role: self.role,
      standbyMode: self.standbyMode,
      placement: self.placement,
      source: confirmed ? 'registry' : 'unconfirmed',
      serves: confirmed && self.role !== 'standby',
    };
    // Only a voter or replica whose role was confirmed since start-up serves.
    assert(!known.serves || (known.source === 'registry' && known.role !== 'standby'));
    return known;
  }

  /**
   * Confirms this member's role: a read barrier, which completes once this member has applied
   * everything the leader had committed when it began, so the registry is current as of then.
   * Runs at start and while the role is unconfirmed or the leader says this member is outside;
   * one at a time (a barrier that cannot complete, outside the configuration, times out).
   */
  private checkRole(): void {
    if (this.roleCheckInFlight || this.closed) return;
    const probe = this.outsideProbe;
    const stale = probe !== null && probe.atMs >= this.roleCheckedAsOfMs;
    if (Number.isFinite(this.roleCheckedAsOfMs) && !stale) return;
    const now = this.clock.now();
    if (now - this.roleCheckStartedMs < ROLE_CHECK_INTERVAL_MS) return;
    this.roleCheckInFlight = true;
    this.roleCheckStartedMs = now;
    this.member.readBarrier((error) => {
      this.roleCheckInFlight = false;
      if (error !== null) return; // no leader, timed out, stopped: the next lease duty retries
      assert(now <= this.clock.now(), 'a role check completes after it started');
      this.roleCheckedAsOfMs = Math.max(this.roleCheckedAsOfMs, now);
      this.syncWatchRefusal();
    });
  }

  /**
   * DESIGN.md "Roles": a standby (hot, warm or cold) serves no client traffic: KV, Watch and
   * Lease RPCs are refused (Maintenance.Status and Cluster.MemberList still answer, so etcdctl
   * endpoint status and member list work against it). Nor does a member whose role is not
   * confirmed yet (see selfRole): it may have been demoted while down. A promoted standby serves
   * once its registry says so. UNAVAILABLE, as etcd refuses RPCs on a learner: a client with
   * several endpoints moves on to the next one instead of giving up.
   */
  private refuseIfStandby(): void {
    const refusal = this.refusal();
    if (refusal !== null) throw new ServerError('STANDBY', refusal);
  }

  /** Why this member serves no client traffic now, or null when it does. */
  private refusal(): string | null {
    const self = this.selfRole();
    if (self.serves) return null;
    const serving = this.state
      .allMembers()
      .filter((m) => m.id !== this.member.id && m.role !== 'standby' && m.clientUrls.length > 0)
      .slice(0, STANDBY_HINT_MEMBERS_MAX)
      .map((m) => `${m.name || m.id.toString(16)} ${m.clientUrls[0]}`);
    const hint = `; use a voter or replica${serving.length === 0 ? '' : ` (${serving.join(', ')})`}`;
    const name = this.options.name;
    if (self.role === 'standby') {
      return `tandem: member ${name} is a ${self.standbyMode} standby and serves no client traffic${hint}`;
    }
    if (self.source === 'leader') {
      return `tandem: member ${name} is outside the cluster's configuration (${self.role === 'unknown' ? 'not registered' : `registered as a ${self.role}`}) and serves no client traffic${hint}`;
    }
    return `tandem: member ${name} has not yet confirmed its role with the cluster's leader since it started (it may have been demoted while down) and serves no client traffic until it has${hint}`;
  }

  /**
   * On the change between serving and not (a demotion, an outside probe, a confirmed role), the
   * watch hub cancels every watcher with the reason (etcd's cancel_reason) and refuses new ones,
   * or serves again. Checked on the watch tick: a watcher gets nothing stale meanwhile (a
   * standby outside the configuration applies nothing new; a hot one applies the live log).
   */
  private syncWatchRefusal(): void {
    const serving = this.selfRole().serves;
    if (serving === this.watchesServing) return;
    this.watchesServing = serving;
    this.state.watchHub.refuseAll(serving ? null : this.refusal());
  }

  // -------------------------------------------------------------------------------------------
  // Header

  header(): Header {
    return {
      clusterId: this.options.clusterId,
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
    this.refuseIfStandby();
    const consistency = req.serializable ? { kind: 'serializable' as const } : opts.consistency;
    await this.readBarrier(consistency, opts.signal);
    const response = this.state.range(req);
    return { header: this.headerAt(response.header.revision), response };
  }

  async put(req: PutRequest, opts: RequestOptions): Promise<WithHeader<PutResponse>> {
    const r = await this.proposeKv({ type: 'put', request: req }, opts);
    assertKind(r, 'put');
    return { header: this.headerAt(r.response.header.revision), response: r.response };
  }

  async deleteRange(
    req: DeleteRangeRequest,
    opts: RequestOptions,
  ): Promise<WithHeader<DeleteRangeResponse>> {
    const r = await this.proposeKv({ type: 'deleteRange', request: req }, opts);
    assertKind(r, 'deleteRange');
    return { header: this.headerAt(r.response.header.revision), response: r.response };
  }

  async txn(req: TxnRequest, opts: RequestOptions): Promise<WithHeader<TxnResponse>> {
    // A read-only txn goes through the log too (linearizable by construction); etcd serves it
    // locally after a read barrier, which is a later optimisation here.
    const r = await this.proposeKv({ type: 'txn', request: req }, opts);
    assertKind(r, 'txn');
    return { header: this.headerAt(r.response.header.revision), response: r.response };
  }

  async compact(
    req: CompactionRequest,
    opts: RequestOptions,
  ): Promise<WithHeader<CompactionResponse>> {
    const r = await this.proposeKv({ type: 'compaction', request: req }, opts);
    assertKind(r, 'compaction');
    return { header: this.headerAt(r.response.header.revision), response: r.response };
  }

  private async proposeKv(req: KvRequest, opts: RequestOptions): Promise<KvResponse> {
    this.refuseIfStandby(); // put, deleteRange, txn, compact
    const command = this.state.encodeKv(req); // etcd's validation before the log: throws KvError
    const { value, index } = await this.proposeIndexed(command, opts.signal);
    const result = value as CommandResult;
    if (result.kind === 'applied' && opts.ack === 'all') await this.ackAll(index);
    if (result.kind === 'applied') return result.response;
    if (result.kind === 'rejected') throw result.error;
    throw new ServerError('UNHEALTHY', `etcdserver: unexpected apply result ${result.kind}`);
  }

  // -------------------------------------------------------------------------------------------
  // Watch

  openWatchStream(onReadable: () => void): WatchStream {
    this.refuseIfStandby();
    return this.state.watchHub.openStream(onReadable);
  }

  // -------------------------------------------------------------------------------------------
  // Leases

  async leaseGrant(
    id: LeaseId,
    ttlSeconds: number,
    opts: RequestOptions,
  ): Promise<LeaseGrantResult> {
    this.refuseIfStandby();
    const chosen = id === 0n ? this.leaseIds.next() : id;
    const result = (await this.propose(
      encodeLeaseGrant(chosen, ttlSeconds),
      opts.signal,
    )) as CommandResult;
    if (result.kind === 'leaseGranted') return result.grant;
    if (result.kind === 'leaseRejected') throw result.error;
    throw new ServerError('UNHEALTHY', `etcdserver: unexpected apply result ${result.kind}`);
  }

  async leaseRevoke(id: LeaseId, opts: RequestOptions): Promise<void> {
    this.refuseIfStandby();
    const result = (await this.propose(encodeLeaseRevoke(id), opts.signal)) as CommandResult;
    if (result.kind === 'leaseRevoked') return;
    if (result.kind === 'leaseRejected') throw result.error;
    throw new ServerError('UNHEALTHY', `etcdserver: unexpected apply result ${result.kind}`);
  }

  async leaseKeepAlive(id: LeaseId, _opts: RequestOptions): Promise<number> {
    this.refuseIfStandby();
    if (!this.member.isLeader) {
      return this.forwarder().leaseKeepAlive(this.leaderClientUrls(), id);
    }
    try {
      const renewed = this.state.lessor.keepAlive(id, this.clock.now());
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
    this.refuseIfStandby();
    if (!this.member.isLeader) {
      return this.forwarder().leaseTimeToLive(this.leaderClientUrls(), id, withKeys);
    }
    await this.readBarrier({ kind: 'linearizable' }, opts.signal);
    try {
      const ttl = this.state.lessor.timeToLive(id, this.clock.now(), withKeys);
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
    this.refuseIfStandby();
    await this.readBarrier(opts.consistency, opts.signal);
    return this.state.lessor.leases();
  }

  private forwarder(): LeaderForwarder {
    const f = this.options.forwarder;
    if (f === undefined) throw new ServerError('NOT_LEADER', 'etcdserver: not leader');
    return f;
  }

  private leaderClientUrls(): readonly string[] {
    const lead = this.member.leader;
    if (lead === NONE) throw new ServerError('NO_LEADER', 'etcdserver: no leader');
    const urls = this.state.member(lead)?.clientUrls ?? [];
    if (urls.length === 0) throw new ServerError('NO_LEADER', 'etcdserver: no leader');
    return urls;
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
    const id = newMemberId(peerUrls, this.clock.now());
    const change: ConfChange = {
      transition: ConfChangeTransition.Auto,
      changes: [
        { type: isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode, nodeId: id },
      ],
      context: encodeAttributes({ name: '', peerUrls, clientUrls: [] }),
    };
    await this.proposeConfChange(change, opts.signal);
    const added = this.state.member(id);
    if (added === undefined)
      throw new ServerError('UNHEALTHY', 'etcdserver: member add was not applied');
    return { member: toApiMember(added), members: this.apiMembers() };
  }

  async memberRemove(id: bigint, opts: RequestOptions): Promise<readonly ApiMember[]> {
    await this.readBarrier({ kind: 'linearizable' }, opts.signal);
    const nodeId = this.knownMember(id).id;
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
    return {
      version: SERVER_VERSION,
      dbSize: this.options.dbSizeBytes?.() ?? 0,
      dbSizeInUse: this.options.dbSizeBytes?.() ?? 0,
      leader: BigInt(this.member.leader),
      raftIndex: this.member.commitIndex,
      raftTerm: this.member.term,
      raftAppliedIndex: this.member.appliedIndex,
      // Outside the leader's configuration (see selfRole), whatever a stale registry says.
      isLearner: this.selfRole().source === 'leader' || (self?.isLearner ?? false),
      errors: [],
    };
  }

  async hashKv(_revision: number): Promise<HashKvResult> {
    const h = this.state.hash();
    return { hash: h.hash, compactRevision: h.compactRevision, hashRevision: h.revision };
  }

  async moveLeader(targetId: bigint, opts: RequestOptions): Promise<void> {
    if (!this.member.isLeader) throw new ServerError('NOT_LEADER', 'etcdserver: not leader');
    const target = this.knownMember(targetId);
    if (target.isLearner) {
      throw new ServerError('BAD_LEADER_TRANSFEREE', 'etcdserver: bad leader transferee');
    }
    if (target.id === this.member.id) return;
    this.member.transferLeader(target.id);
    const deadline = this.clock.now() + this.options.electionTimeoutMs * 2;
    while (this.member.leader !== target.id) {
      if (opts.signal?.aborted) throw new ServerError('CANCELED', 'context canceled');
      if (this.clock.now() > deadline) {
        throw new ServerError(
          'TIMEOUT',
          'etcdserver: request timed out, leader transfer took too long',
        );
      }
      await new Promise((resolve) => this.clock.setTimeout(() => resolve(null), 20));
    }
  }

  async snapshot(): Promise<SnapshotStream> {
    const data = this.state.snapshot();
    const chunkBytes = 32 * 1024;
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += chunkBytes) chunks.push(data.subarray(i, i + chunkBytes));
    return { header: this.header(), sizeBytes: data.length, chunks };
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  /**
   * Proposes `command`; resolves with its result and an index at or after its entry's (the
   * applied index when the result arrived: the callback runs while the entry is applied).
   */
  private proposeIndexed(
    command: Uint8Array,
    signal?: AbortSignal,
  ): Promise<{ value: unknown; index: number }> {
    if (signal?.aborted) return Promise.reject(new ServerError('CANCELED', 'context canceled'));
    return new Promise((resolve, reject) => {
      this.member.propose(command, (error, value) =>
        error === null ? resolve({ value, index: this.member.appliedIndex }) : reject(error),
      );
    });
  }

  /**
   * ack=all for a write applied at `index` here: the leader checks its own view of every voter;
   * a follower forwards the check to the leader (only it sees every voter's progress).
   */
  private async ackAll(index: number): Promise<void> {
    if (this.member.isLeader) return this.awaitAllVotersHere(index);
    const f = this.options.forwarder;
    if (f?.awaitAllVoters === undefined) {
      throw new ServerError(
        'NOT_LEADER',
        `tandem: write committed at index ${index}, but ack=all cannot be checked here; send it to the leader (${this.leaderName()})`,
      );
    }
    const timeoutMs = this.options.ackAllTimeoutMs ?? ACK_ALL_TIMEOUT_MS_DEFAULT;
    await f.awaitAllVoters(this.leaderClientUrls(), index, timeoutMs);
  }

  /** The leader's half of a follower's ack=all write (the API's Ack service). */
  async awaitAllVoters(index: number): Promise<void> {
    if (!this.member.isLeader) {
      throw new ServerError('NOT_LEADER', `tandem: not the leader (${this.leaderName()})`);
    }
    await this.awaitAllVotersHere(index);
  }

  /**
   * ack=all: waits until every voter (outgoing ones of a joint configuration too) has persisted
   * `index` (its match index on this leader), or fails with WRITE_ACK_TIMEOUT: the write is
   * committed by a quorum either way, only the acknowledgement of every voter is missing.
   */
  private async awaitAllVotersHere(index: number): Promise<void> {
    const timeoutMs = this.options.ackAllTimeoutMs ?? ACK_ALL_TIMEOUT_MS_DEFAULT;
    const deadline = this.clock.now() + timeoutMs;
    for (let round = 0; round < 1_000_000; round++) {
      const missing = this.votersMissing(index);
      if (missing.length === 0) return;
      if (this.clock.now() >= deadline) {
        throw new ServerError(
          'WRITE_ACK_TIMEOUT',
          `tandem: write committed at index ${index} by a quorum, but voter(s) ${missing.join(', ')} did not persist it within ${timeoutMs} ms (ack=all); it is NOT rolled back`,
        );
      }
      await new Promise((resolve) => this.clock.setTimeout(() => resolve(null), ACK_ALL_POLL_MS));
    }
  }

  /** Names of the voters whose match index is below `index` (all of them off the leader). */
  private votersMissing(index: number): string[] {
    const status = this.member.status();
    const voters = new Set([...status.config.voters, ...status.config.votersOutgoing]);
    const missing: string[] = [];
    for (const id of voters) {
      const match =
        id === this.member.id ? this.member.appliedIndex : status.progress.get(id)?.match;
      if (match === undefined || match < index) {
        missing.push(this.state.member(id)?.name || id.toString(16));
      }
    }
    return missing;
  }

  private leaderName(): string {
    const lead = this.member.leader;
    if (lead === NONE) return 'no leader known';
    const m = this.state.member(lead);
    return `${m?.name || lead.toString(16)}${m?.clientUrls[0] ? ` at ${m.clientUrls[0]}` : ''}`;
  }

  /**
   * Bounded staleness served locally: a read barrier started at `freshAsOfMs` has completed (its
   * index is applied), so this member's state is at least as new as the cluster's was then, and
   * at most `now - freshAsOfMs` stale. Only this member's clock and a round trip count: "heard
   * from the leader recently" is no bound, since a message may have travelled for any time
   * (40 ms between zones; seconds in a stalled TCP buffer) before it was heard.
   */
  freshWithin(maxStalenessMs: number): boolean {
    return this.clock.now() - this.freshAsOfMs <= maxStalenessMs;
  }

  /** How this member served reads: from local state at once, or after a read barrier. */
  readCounters(): { readonly local: number; readonly barrier: number } {
    return { local: this.readsLocal, barrier: this.readsBarrier };
  }

  private propose(command: Uint8Array, signal?: AbortSignal): Promise<unknown> {
    if (signal?.aborted) return Promise.reject(new ServerError('CANCELED', 'context canceled'));
    return new Promise((resolve, reject) => {
      this.member.propose(command, (error, value) =>
        error === null ? resolve(value) : reject(error),
      );
    });
  }

  private proposeConfChange(change: ConfChange, signal?: AbortSignal): Promise<unknown> {
    if (signal?.aborted) return Promise.reject(new ServerError('CANCELED', 'context canceled'));
    return new Promise((resolve, reject) => {
      this.member.proposeConfChange(change, (error, value) =>
        error === null ? resolve(value) : reject(error),
      );
    });
  }

  private readBarrier(
    consistency: RequestOptions['consistency'],
    signal?: AbortSignal,
  ): Promise<number> {
    if (signal?.aborted) return Promise.reject(new ServerError('CANCELED', 'context canceled'));
    if (
      consistency.kind === 'serializable' ||
      (consistency.kind === 'bounded' && this.freshWithin(consistency.maxStalenessMs))
    ) {
      this.readsLocal++;
      return Promise.resolve(this.member.appliedIndex);
    }
    this.readsBarrier++;
    const startedMs = this.clock.now();
    return new Promise((resolve, reject) => {
      const done = (error: Error | null, index?: number): void => {
        if (error !== null) {
          reject(error);
          return;
        }
        // Applied up to a read index confirmed after startedMs: fresh as of startedMs.
        assert(index === undefined || index <= this.member.appliedIndex, 'barrier index applied');
        this.freshAsOfMs = Math.max(this.freshAsOfMs, startedMs);
        resolve(index ?? 0);
      };
      if (consistency.kind === 'lease') this.member.leaseReadBarrier(done);
      else this.member.readBarrier(done); // bounded and not known fresh: a linearizable barrier
    });
  }

  /** Leader only: revoke what expired, checkpoint what is due (both through the log). */
  private leaseDuties(): void {
    const isLeader = this.member.isLeader && this.member.status().raftState === StateType.Leader;
    this.onLeadership(isLeader);
    if (!isLeader) return;
    const now = this.clock.now();
    for (const id of this.state.lessor.expired(now)) {
      this.member.propose(encodeLeaseRevoke(id), () => {});
    }
    const checkpoints = this.state.lessor.checkpoints(now);
    if (checkpoints.length > 0) this.member.propose(encodeLeaseCheckpoints(checkpoints), () => {});
  }

  /**
   * Publishes this member's name and client URLs once (etcd's publish), then its zone and
   * standby mode (registry commands), each retried until applied. Its role is not published:
   * the registry decides it (a demoted voter restarts as a standby whatever its config says).
   */
  private publishSelf(): void {
    if (this.publishing || this.member.leader === NONE) return;
    if (this.outsideConfiguration()) {
      this.publishOutside();
      return;
    }
    if (this.published) {
      this.publishPlacementFacts();
      return;
    }
    const self = this.state.member(this.member.id);
    if (
      self !== undefined &&
      self.name === this.options.name &&
      sameUrls(self.clientUrls, this.options.clientUrls)
    ) {
      this.published = true;
      return;
    }
    this.publishing = true;
    this.member.propose(
      encodeMemberAttributes(this.member.id, this.options.name, [...this.options.clientUrls]),
      (error) => {
        this.publishing = false;
        if (error === null) this.published = true;
      },
    );
  }

  private publishPlacementFacts(): void {
    const command = this.placementFactsDue()[0];
    if (command === undefined) return;
    this.publishing = true;
    this.member.propose(encodeRegistryEntry(command), () => {
      this.publishing = false;
    });
  }

  /** The zone and standby facts this member's registry copy does not show yet. */
  private placementFactsDue(): RegistryCommand[] {
    const self = this.state.member(this.member.id);
    if (self === undefined) return [];
    const { zone, standby } = this.options;
    const due: RegistryCommand[] = [];
    if (zone !== undefined && self.zone !== zone) due.push({ kind: 'set-zone', id: self.id, zone });
    if (
      standby !== undefined &&
      (self.standbyMode !== standby.mode || self.snapshotEveryMs !== standby.snapshotEveryMs)
    ) {
      due.push({ kind: 'set-standby', id: self.id, ...standby });
    }
    return due;
  }

  /**
   * True when this member is outside the Raft configuration (a warm or cold standby): its own
   * configuration has it in no role, or the leader of its term says so (a member removed while
   * it was down still has an old configuration that lists it).
   */
  private outsideConfiguration(): boolean {
    if (this.selfRole().source === 'leader') return true;
    const cs = this.member.configuration;
    const id = this.member.id;
    return !(
      cs.voters.includes(id) ||
      cs.learners.includes(id) ||
      cs.votersOutgoing.includes(id) ||
      cs.learnersNext.includes(id)
    );
  }

  /**
   * Publication from outside the configuration: every fact its (stale) registry copy lacks,
   * each at most once per leader term (see outsideProposed). Facts already applied by the
   * cluster are proposed again once per term at most: harmless (the registry commands are
   * idempotent), and bounded.
   */
  private publishOutside(): void {
    const term = this.member.term;
    if (term !== this.outsideProposedTerm) {
      this.outsideProposedTerm = term;
      this.outsideProposed.clear();
    }
    const self = this.state.member(this.member.id);
    const entries: [string, Uint8Array][] = [];
    if (
      self === undefined ||
      self.name !== this.options.name ||
      !sameUrls(self.clientUrls, this.options.clientUrls)
    ) {
      entries.push([
        'attributes',
        encodeMemberAttributes(this.member.id, this.options.name, [...this.options.clientUrls]),
      ]);
    }
    for (const command of this.placementFactsDue()) {
      entries.push([command.kind, encodeRegistryEntry(command)]);
    }
    for (const [key, entry] of entries) {
      if (this.outsideProposed.has(key)) continue;
      this.outsideProposed.add(key);
      this.member.propose(entry, () => {}); // applied where raft runs; never seen here
    }
  }
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

function assertKind<T extends KvResponse['type']>(
  r: KvResponse,
  type: T,
): asserts r is Extract<KvResponse, { type: T }> {
  if (r.type !== type)
    throw new ServerError('UNHEALTHY', `etcdserver: expected ${type}, got ${r.type}`);
}

function sameUrls(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((u, i) => u === b[i]);
}

/** A fresh member id: 52 bits of a hash of its URLs and the time, never 0. */
export function newMemberId(peerUrls: readonly string[], nowMs: number): number {
  const h = createHash('sha256').update(peerUrls.join(',')).update(String(nowMs)).digest();
  const id = (h.readUInt32BE(0) & 0xfffff) * 2 ** 32 + h.readUInt32BE(4);
  return id === 0 ? 1 : id;
}
