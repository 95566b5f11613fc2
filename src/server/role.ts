/**
 * Role truth: what this member is (voter, replica, standby) as far as it can know, whether it
 * serves clients, and why not.
 *
 * The local registry alone is not enough. A voter demoted to a warm or cold standby while it was
 * down is removed from the configuration without ever receiving the change, so its own registry
 * still says "voter"; a member just started may hold a registry of any age. Hence two sources
 * besides the registry:
 *
 *   role check     a read barrier (ReadIndex): once it completes, this member has applied what
 *                  the leader had committed when it began, so the registry is current as of
 *                  then. Run at start, and again whenever the leader says this member is outside.
 *   outside probe  the leader heartbeats every registered member outside its configuration
 *                  (warm and cold standbys, which Raft never messages) with the registry's
 *                  record of it; the member hears "you are outside, as a <role>".
 *
 * A member serves clients (KV, Watch, Lease) only as a voter or replica whose role a check has
 * confirmed in this incarnation. The façade asks before it starts a request and again before it
 * answers one that waited (a read barrier): a demotion applied meanwhile refuses the answer.
 */
import type { StandbyMode } from '../cluster/commands.js';
import {
  decodeRoleRecord,
  encodeRoleRecord,
  type MemberRecord,
  type Placement,
  type Role,
  type RoleRecord,
} from '../cluster/registry.js';
import type { Clock } from '../io/clock.js';
import { inConfState, type Message, MessageType, type NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { ServerError } from './errors.js';
import { MemberEvents, type TickSchedule } from './events.js';
import type { TandemMember, TandemStateMachine } from './tandem-state-machine.js';

/** How often, at most, a member whose role is not confirmed starts a role check. */
export const ROLE_CHECK_INTERVAL_MS = 500;
/** A refusal names at most this many members that do serve clients. */
export const SERVING_HINT_MEMBERS_MAX = 8;
/**
 * An outside probe's heartbeat context starts with this tag ('OUTS'); the registry's record of
 * the member follows. Raft echoes a heartbeat's context and reads it only on the leader, for
 * ReadIndex (those contexts start with 'R').
 */
export const OUTSIDE_PROBE_TAG: Uint8Array = Uint8Array.of(0x4f, 0x55, 0x54, 0x53);
/** The role record after the tag (registry.ts encodeRoleRecord); the leader's URL follows. */
const ROLE_RECORD_BYTES = 2;
/** A longer client URL is not sent in probes (heartbeats stay small). */
const PROBE_URL_BYTES_MAX = 256;
const EMPTY = new Uint8Array(0);

/** Bugs the simulator switches on to prove its role checks can fail (never in production). */
export type RoleBugName = 'serve-unconfirmed' | 'role-checked-on-arrival';

/**
 * This member's role as it knows it, and where that knowledge comes from:
 *   registry     the replicated registry, confirmed current since start-up by a role check;
 *   leader       the leader of this member's term probes it as outside its configuration, and
 *                no role check has completed since: the leader's record of it, in the probe;
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

export interface RoleTruthOptions {
  readonly member: TandemMember;
  readonly state: TandemStateMachine;
  readonly clock: Clock;
  readonly events: MemberEvents;
  readonly schedule: TickSchedule;
  /** This member's name, for refusals. */
  readonly name: string;
  /** The standby mode this member's config gives it (until the registry says otherwise). */
  readonly configuredStandbyMode: StandbyMode;
  /** How often the leader probes members outside its configuration (the heartbeat interval). */
  readonly probeIntervalMs: number;
  readonly bugs?: ReadonlySet<string>;
}

export class RoleTruth {
  private readonly o: RoleTruthOptions;
  /**
   * When the latest completed role check started (ms): the local registry is as fresh as the
   * cluster's was then. -Infinity until one completes in this incarnation.
   */
  private checkedAsOfMs = Number.NEGATIVE_INFINITY;
  private checkInFlight = false;
  private checkStartedMs = Number.NEGATIVE_INFINITY;
  /** The latest outside probe from the leader of this member's term (null: none since start). */
  private outsideProbe: {
    readonly atMs: number;
    readonly record: RoleRecord | null;
    /** The prober's (the leader's) client URL, when it sent one. */
    readonly leaderClientUrl: string | null;
  } | null = null;
  /** Whether watch streams were last told this member serves (see syncWatchRefusal). */
  private watchesServing = false;
  private readonly serveUnconfirmed: boolean;
  /** Called once, when the first role check of this incarnation completes (start-up logs it). */
  readonly firstConfirmed: Array<() => void> = [];

  constructor(options: RoleTruthOptions) {
    this.o = options;
    this.serveUnconfirmed = options.bugs?.has('serve-unconfirmed') ?? false;
    MemberEvents.add(options.events.stepped, (m, term, lead) => this.stepped(m, term, lead));
    options.schedule.every('role-check', ROLE_CHECK_INTERVAL_MS, () => this.check());
    options.schedule.every('outside-probes', options.probeIntervalMs, () => this.probeOutside());
  }

  /** The first role check, at once: it waits for a leader and completes when one answers. */
  start(): void {
    this.check();
  }

  /**
   * Newest fact first: the leader's outside probe; a registry that says standby (refusing is
   * always safe); nothing confirmed since start-up; else the registry, confirmed.
   */
  selfRole(): SelfRole {
    const self = this.o.state.member(this.o.member.id);
    const configuredMode = this.o.configuredStandbyMode;
    const probe = this.outsideProbe;
    if (probe !== null && probe.atMs >= this.checkedAsOfMs) {
      // Outside the leader's configuration: no log reaches it, whatever the record says.
      return {
        role: probe.record?.role ?? 'unknown',
        standbyMode: probe.record?.standbyMode ?? self?.standbyMode ?? configuredMode,
        placement: 'none',
        source: 'leader',
        serves: false,
      };
    }
    // INJECTED BUG (simulator only): a registry never confirmed counts as confirmed.
    const confirmed = Number.isFinite(this.checkedAsOfMs) || this.serveUnconfirmed;
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
    assert(!known.serves || (known.source === 'registry' && known.role !== 'standby'));
    return known;
  }

  /**
   * DESIGN.md "Roles": a standby serves no client traffic, nor does a member whose role is not
   * confirmed (it may have been demoted while down). UNAVAILABLE, as etcd refuses RPCs on a
   * learner: a client with several endpoints moves on to the next one instead of giving up.
   */
  refuseUnlessServing(): void {
    const refusal = this.refusal();
    if (refusal !== null) throw new ServerError('STANDBY', refusal);
  }

  /** Why this member serves no client traffic now, or null when it does. */
  refusal(): string | null {
    const self = this.selfRole();
    if (self.serves) return null;
    const serving = this.servingMembers().map(
      (m) => `${m.name || m.id.toString(16)} ${m.clientUrls[0]}`,
    );
    const hint = `; use a voter or replica${serving.length === 0 ? '' : ` (${serving.join(', ')})`}`;
    const name = this.o.name;
    if (self.role === 'standby') {
      return `tandem: member ${name} is a ${self.standbyMode} standby and serves no client traffic${hint}`;
    }
    if (self.source === 'leader') {
      return `tandem: member ${name} is outside the cluster's configuration (${self.role === 'unknown' ? 'not registered' : `registered as a ${self.role}`}) and serves no client traffic${hint}`;
    }
    return `tandem: member ${name} has not yet confirmed its role with the cluster's leader since it started (it may have been demoted while down) and serves no client traffic until it has${hint}`;
  }

  /**
   * Other members that serve clients (voters and replicas with a client URL, as the registry
   * says), the leader first, at most SERVING_HINT_MEMBERS_MAX: where refusals point, and where a
   * member that serves none forwards.
   */
  servingMembers(): MemberRecord[] {
    const leader = this.o.member.leader;
    return this.o.state
      .allMembers()
      .filter((m) => m.id !== this.o.member.id && m.role !== 'standby' && m.clientUrls.length > 0)
      .sort((a, b) => Number(b.id === leader) - Number(a.id === leader))
      .slice(0, SERVING_HINT_MEMBERS_MAX);
  }

  /**
   * Client URLs of members that serve clients, the leader first: the registry's, else the one
   * the leader's last outside probe carried (a standby outside the configuration may hold a
   * registry from before any member published its URL).
   */
  servingClientUrls(): string[] {
    const urls = this.servingMembers().map((m) => m.clientUrls[0]!);
    const probed = this.outsideProbe?.leaderClientUrl ?? null;
    if (urls.length === 0 && probed !== null) urls.push(probed);
    return urls;
  }

  /**
   * True when this member is outside the Raft configuration (a warm or cold standby): its own
   * configuration has it in no role, or the leader of its term says so (a member removed while
   * it was down still has an old configuration that lists it).
   */
  outsideConfiguration(): boolean {
    if (this.selfRole().source === 'leader') return true;
    return !inConfState(this.o.member.configuration, this.o.member.id);
  }

  /**
   * On the change between serving and not (a demotion, an outside probe, a confirmed role), the
   * watch hub cancels every watcher with the reason (etcd's cancel_reason) and refuses new ones,
   * or serves again. A watcher gets nothing stale meanwhile (a standby outside the configuration
   * applies nothing new; a hot one applies the live log).
   */
  syncWatchRefusal(): void {
    const serving = this.selfRole().serves;
    if (serving === this.watchesServing) return;
    this.watchesServing = serving;
    this.o.state.watchHub.refuseAll(serving ? null : this.refusal());
  }

  /**
   * Starts a role check when the role is unconfirmed or the leader says this member is outside;
   * one at a time, at most every ROLE_CHECK_INTERVAL_MS (a barrier that cannot complete, outside
   * the configuration, times out).
   */
  private check(): void {
    if (this.checkInFlight || !this.o.member.running) return;
    const probe = this.outsideProbe;
    const stale = probe !== null && probe.atMs >= this.checkedAsOfMs;
    if (Number.isFinite(this.checkedAsOfMs) && !stale) return;
    const now = this.o.clock.now();
    if (now - this.checkStartedMs < ROLE_CHECK_INTERVAL_MS) return;
    this.checkInFlight = true;
    this.checkStartedMs = now;
    this.o.member.readBarrier((error) => {
      this.checkInFlight = false;
      if (error !== null) return; // no leader, timed out, stopped: the schedule retries
      assert(now <= this.o.clock.now(), 'a role check completes after it started');
      const first = !Number.isFinite(this.checkedAsOfMs);
      this.checkedAsOfMs = Math.max(this.checkedAsOfMs, now);
      this.syncWatchRefusal();
      if (first) for (const listener of this.firstConfirmed) listener();
    });
  }

  /** Leader: one probe to each registered member outside the configuration. */
  private probeOutside(): void {
    const member = this.o.member;
    if (!member.isLeader) return;
    const cs = member.configuration;
    // The leader's client URL rides along: a standby outside the configuration applies no log,
    // so its registry may know no member's URL to forward clients to (standby-forward.ts).
    const own = this.o.state.member(member.id)?.clientUrls[0] ?? '';
    const url = own.length <= PROBE_URL_BYTES_MAX ? new TextEncoder().encode(own) : EMPTY;
    for (const m of this.o.state.allMembers()) {
      if (m.id === member.id || inConfState(cs, m.id)) continue;
      const record = encodeRoleRecord(m);
      const context = new Uint8Array(OUTSIDE_PROBE_TAG.length + record.length + url.length);
      context.set(OUTSIDE_PROBE_TAG, 0);
      context.set(record, OUTSIDE_PROBE_TAG.length);
      context.set(url, OUTSIDE_PROBE_TAG.length + record.length);
      member.heartbeat(m.id, context);
    }
  }

  /**
   * An outside probe counts only once raft took its sender as the leader of our current term:
   * a stale leader's probe (an older term) says nothing about the configuration now.
   */
  private stepped(m: Message, term: number, lead: NodeId): void {
    if (m.type !== MessageType.Heartbeat || !startsWith(m.context, OUTSIDE_PROBE_TAG)) return;
    if (term !== m.term || lead !== m.from) return;
    const at = OUTSIDE_PROBE_TAG.length;
    const record = decodeRoleRecord(m.context.subarray(at, at + ROLE_RECORD_BYTES));
    const rest = m.context.subarray(at + ROLE_RECORD_BYTES);
    const leaderClientUrl =
      rest.length > 0 && rest.length <= PROBE_URL_BYTES_MAX ? new TextDecoder().decode(rest) : null;
    this.outsideProbe = { atMs: this.o.clock.now(), record, leaderClientUrl };
  }
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}
