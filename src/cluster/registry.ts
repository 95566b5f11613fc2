/**
 * The member registry: who is in the cluster, with their names, addresses, zone, role, standby
 * mode and last recorded health. Replicated state: it changes only when a log entry is applied (a
 * membership change, whose context carries the member's attributes or the policy's registry
 * commands, or a registry command of its own), so every member agrees on it.
 *
 * Roles map to Raft (DESIGN.md "Roles"):
 *
 *   role      standby mode   resting placement in the Raft configuration
 *   voter     -              voter
 *   replica   -              learner
 *   standby   hot            learner
 *   standby   warm | cold    none (registered, outside the configuration)
 *
 * A warm or cold standby is a learner only while it is staged for promotion (catching up).
 * `list()` is etcd's view (members in the Raft configuration, for MemberList); `all()` includes
 * the standbys outside it.
 *
 * Pure: no I/O, no clock. Times (`atMs`, `sinceMs`) are the leader's clock, carried in commands;
 * `lastRefreshAtMs` is wall-clock time (a new leader compares it with its own: commands.ts).
 */
import { pack, unpack } from 'msgpackr';
import type { ConfChange, ConfState, NodeId } from '../raft/types.js';
import { assert, assertUint } from '../util/assert.js';
import {
  checkCommand,
  decodeChangeContext,
  type HealthState,
  NAME_LENGTH_MAX,
  type RegistryCommand,
  RegistryError,
  type RegistryErrorCode,
  type Role,
  SNAPSHOT_EVERY_MS_DEFAULT,
  type StandbyMode,
  URLS_MAX,
} from './commands.js';

export {
  type HealthState,
  type RegistryCommand,
  RegistryError,
  type RegistryErrorCode,
  type Role,
  type StandbyMode,
} from './commands.js';

export const MEMBERS_MAX = 64;
/**
 * Removed member ids remembered at most, the oldest forgotten first (etcd keeps every one in its
 * members_removed bucket; a bound keeps a cluster that churns members from growing without end).
 */
export const REMOVED_IDS_MAX = 1024;
/**
 * The snapshot layout written by `toSnapshot`; version 1 was a bare list of 5-tuples, version 2
 * rows of 14 fields (no `lastRefreshAtMs`), version 3 rows of 15 (no `promotedByPolicy`), all
 * still read. Version 4 may carry `removed` (the removed member ids, oldest first): added
 * beside `members` without a new version so that a member still on the older code reads it
 * (and ignores the list) during a rolling upgrade.
 */
export const REGISTRY_SNAPSHOT_VERSION = 4;
const ROW_FIELDS_V2 = 14;
const ROW_FIELDS_V3 = 15;
const ROW_FIELDS_V4 = 16;

/** A founding member; role and mode default to a voter (hot when it becomes a standby). */
export interface Founder extends MemberAttributes {
  readonly id: NodeId;
  readonly role?: Role;
  readonly standbyMode?: StandbyMode;
  readonly zone?: string;
}

/** The founding Raft configuration of `founders`: voters, and learners (replicas, hot standbys). */
export function foundingConfig(founders: readonly Founder[]): {
  voters: NodeId[];
  learners: NodeId[];
} {
  const voters: NodeId[] = [];
  const learners: NodeId[] = [];
  for (const f of founders) {
    const placement = restingPlacement(f.role ?? 'voter', f.standbyMode ?? 'hot');
    if (placement === 'voter') voters.push(f.id);
    else if (placement === 'learner') learners.push(f.id);
  }
  return { voters, learners };
}

/** Where a member sits in the Raft configuration. */
export type Placement = 'voter' | 'learner' | 'none';

/** etcd's view of a member (what MemberList shows). */
export interface MemberInfo {
  readonly id: NodeId;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  /** etcd's flag: true unless the member votes (outside-config standbys are not in `list()`). */
  readonly isLearner: boolean;
}

/** tandem's full view of a member: etcd's plus role, mode, zone and recorded health. */
export interface MemberRecord extends MemberInfo {
  /** Where the member is now (an outgoing voter of a joint configuration is still a voter). */
  readonly placement: Placement;
  readonly role: Role;
  /** The member's configured mode whenever it is a standby (kept while it is a voter). */
  readonly standbyMode: StandbyMode;
  /** Warm standbys: how often the leader ships them a snapshot. */
  readonly snapshotEveryMs: number;
  /** '' when unknown. */
  readonly zone: string;
  /** The last health the leader recorded (the live view is the leader's failure detector). */
  readonly health: HealthState;
  readonly healthSinceMs: number;
  readonly promotedAtMs: number | null;
  readonly demotedAtMs: number | null;
  /**
   * A voter the redundancy policy promoted (replace, restore): the policy may return it to the
   * standbys when the voters outnumber `policy.voters` (policy.ts rule 3, trim). False for a
   * founder, a voter added or promoted by an operator (etcd's MemberAdd and MemberPromote,
   * `tandem member promote`), and for every member not voting.
   */
  readonly promotedByPolicy: boolean;
  /** Warm standbys: when a leader last saw it catch up (wall-clock ms; null: never recorded). */
  readonly lastRefreshAtMs: number | null;
}

/** What a membership change's context carries (raft keeps it opaque). */
export interface MemberAttributes {
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
}

export function encodeAttributes(a: MemberAttributes): Uint8Array {
  checkAttributes(a);
  return pack([a.name, a.peerUrls, a.clientUrls]);
}

export function decodeAttributes(bytes: Uint8Array): MemberAttributes | null {
  if (bytes.length === 0) return null;
  let v: unknown;
  try {
    v = unpack(bytes);
  } catch {
    return null;
  }
  if (!Array.isArray(v) || v.length !== 3) return null;
  const [name, peerUrls, clientUrls] = v as unknown[];
  if (typeof name !== 'string' || !isStrings(peerUrls) || !isStrings(clientUrls)) return null;
  return { name, peerUrls, clientUrls };
}

function isStrings(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

export function checkAttributes(a: MemberAttributes): void {
  if (a.name.length > NAME_LENGTH_MAX) {
    throw new RegistryError('BAD_MEMBER_ATTRIBUTES', `member name longer than ${NAME_LENGTH_MAX}`);
  }
  if (a.peerUrls.length > URLS_MAX || a.clientUrls.length > URLS_MAX) {
    throw new RegistryError('BAD_MEMBER_ATTRIBUTES', `more than ${URLS_MAX} URLs for a member`);
  }
}

/** Where a member of this role and mode belongs when no change is under way. */
export function restingPlacement(role: Role, mode: StandbyMode): Placement {
  if (role === 'voter') return 'voter';
  if (role === 'replica' || mode === 'hot') return 'learner';
  return 'none';
}

/** A standby whose last role change was a demotion (not promoted since). */
export function wasDemoted(m: MemberRecord): boolean {
  return m.demotedAtMs !== null && (m.promotedAtMs === null || m.demotedAtMs >= m.promotedAtMs);
}

/** What the leader's registry says of a member, as an outside probe carries it (2 bytes). */
export interface RoleRecord {
  /** null: the leader has no record of the member (removed). */
  readonly role: Role | null;
  readonly standbyMode: StandbyMode;
}

const ROLE_CODES: readonly Role[] = ['voter', 'replica', 'standby'];
const MODE_CODES: readonly StandbyMode[] = ['hot', 'warm', 'cold'];

/** [role code (0: not registered, else 1 + index), mode index]. */
export function encodeRoleRecord(m: MemberRecord | undefined): Uint8Array {
  if (m === undefined) return Uint8Array.of(0, 0);
  const role = ROLE_CODES.indexOf(m.role);
  const mode = MODE_CODES.indexOf(m.standbyMode);
  assert(role >= 0 && mode >= 0, `member ${m.id}: role ${m.role}, mode ${m.standbyMode}`);
  return Uint8Array.of(role + 1, mode);
}

/** The record `encodeRoleRecord` made, or null for bytes it did not make (a peer's bug). */
export function decodeRoleRecord(bytes: Uint8Array): RoleRecord | null {
  if (bytes.length !== 2) return null;
  const [roleCode, modeCode] = [bytes[0]!, bytes[1]!];
  const standbyMode = MODE_CODES[modeCode];
  if (standbyMode === undefined || roleCode > ROLE_CODES.length) return null;
  return { role: roleCode === 0 ? null : ROLE_CODES[roleCode - 1]!, standbyMode };
}

/** A fresh member record with the defaults of a member that has published nothing yet. */
function newMember(id: NodeId, attrs: MemberAttributes, placement: Placement): MemberRecord {
  return {
    id,
    ...attrs,
    isLearner: placement !== 'voter',
    placement,
    // A member that enters as a learner is a standby until the policy (or an operator) says
    // otherwise: tandem's joining members enter as standbys (src/cli/config.ts).
    role: placement === 'voter' ? 'voter' : 'standby',
    standbyMode: 'hot',
    snapshotEveryMs: SNAPSHOT_EVERY_MS_DEFAULT,
    zone: '',
    health: 'healthy',
    healthSinceMs: 0,
    promotedAtMs: null,
    demotedAtMs: null,
    promotedByPolicy: false,
    lastRefreshAtMs: null,
  };
}

export class MemberRegistry {
  private readonly members = new Map<NodeId, MemberRecord>();
  /**
   * Ids of members that left the registry (etcd's members_removed), oldest first, at most
   * REMOVED_IDS_MAX; an id that is registered again leaves the list (tandem reuses a founder's
   * id when it rejoins under its name, where etcd refuses a removed id for good).
   */
  private readonly removed: NodeId[] = [];

  /**
   * The founding members of a new cluster: voters unless a founder says otherwise. A founding
   * replica or standby sits where its role and mode rest (`restingPlacement`): the caller puts
   * the same members in the founding Raft configuration (`foundingConfig`).
   */
  static bootstrap(founders: readonly Founder[]): MemberRegistry {
    const r = new MemberRegistry();
    for (const f of founders) {
      const { id, name, peerUrls, clientUrls } = f;
      assert(!r.members.has(id), `duplicate founding member id ${id}`);
      const role = f.role ?? 'voter';
      const mode = f.standbyMode ?? 'hot';
      const placement = restingPlacement(role, mode);
      const m = newMember(id, { name, peerUrls, clientUrls }, placement);
      r.members.set(id, { ...m, role, standbyMode: mode, zone: f.zone ?? '' });
    }
    assert(
      r.members.size === 0 || [...r.members.values()].some((m) => m.placement === 'voter'),
      'a cluster is founded by at least one voter',
    );
    return r;
  }

  get(id: NodeId): MemberRecord | undefined {
    return this.members.get(id);
  }

  findByName(name: string): MemberRecord | undefined {
    for (const m of this.members.values()) if (m.name === name) return m;
    return undefined;
  }

  /** etcd's view: the members in the Raft configuration (voters and learners), by id. */
  list(): MemberRecord[] {
    return this.all().filter((m) => m.placement !== 'none');
  }

  /** Every registered member, standbys outside the Raft configuration included, by id. */
  all(): MemberRecord[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  /** Every registered member. */
  get size(): number {
    return this.members.size;
  }

  findByPeerUrl(url: string): MemberRecord | undefined {
    for (const m of this.members.values()) if (m.peerUrls.includes(url)) return m;
    return undefined;
  }

  /**
   * Applies a membership change entry: first the registry commands its context carries (the
   * policy's role changes, so they land atomically with the change they explain), then the
   * resulting configuration (`applyConfState`), with the context's time as the change time.
   */
  applyConfChange(confState: ConfState, change: ConfChange): void {
    const changed = change.changes.length === 1 ? change.changes[0]!.nodeId : null;
    const ctx = decodeChangeContext(change.context);
    if (ctx === null) {
      this.applyConfState(confState, changed, decodeAttributes(change.context));
      return;
    }
    for (const command of ctx.commands) this.applyIntent(command);
    this.applyConfState(confState, changed, null, ctx.atMs);
  }

  /**
   * Brings the registry in line with the configuration a membership change produced. Members in
   * the configuration are present with the right placement (attributes from the change's context
   * when it carries them); roles follow the incoming configuration (a new voter is a voter, a
   * voter turned learner is a standby); members no longer in it are removed, except standbys
   * whose mode keeps them outside (warm, cold), which stay registered.
   */
  applyConfState(
    confState: ConfState,
    changed: NodeId | null,
    attrs: MemberAttributes | null,
    atMs: number | null = null,
  ): void {
    const voters = new Set(confState.voters);
    const outgoing = new Set(confState.votersOutgoing);
    const learners = new Set([...confState.learners, ...confState.learnersNext]);
    for (const id of new Set([...voters, ...outgoing, ...learners, ...this.members.keys()])) {
      const final: Placement = voters.has(id) ? 'voter' : learners.has(id) ? 'learner' : 'none';
      const placement: Placement = outgoing.has(id) && final !== 'voter' ? 'voter' : final;
      const fresh = id === changed && attrs !== null ? attrs : null;
      const next = this.placed(id, placement, final, fresh, atMs);
      if (next === null) this.forget(id);
      else this.remember(next);
    }
    assert(this.members.size <= MEMBERS_MAX * 2, 'registry grew past its limit');
  }

  /** One member's record after a configuration change, or null when it leaves the registry. */
  private placed(
    id: NodeId,
    placement: Placement,
    final: Placement,
    fresh: MemberAttributes | null,
    atMs: number | null,
  ): MemberRecord | null {
    const known = this.members.get(id);
    if (known === undefined && placement === 'none') return null;
    // A member the configuration adds (etcd's MemberAdd) has proven nothing yet: recorded as
    // catching up, so a leader elected before it is heard does not trust it (health.ts).
    const base = known ?? {
      ...newMember(id, { name: '', peerUrls: [], clientUrls: [] }, placement),
      health: 'lagging' as const,
      healthSinceMs: atMs ?? 0,
    };
    let m: MemberRecord = {
      ...base,
      name: fresh?.name || base.name,
      peerUrls: fresh?.peerUrls ?? base.peerUrls,
      clientUrls: fresh?.clientUrls.length ? fresh.clientUrls : base.clientUrls,
      placement,
      isLearner: placement !== 'voter',
    };
    // Roles follow the incoming configuration: the change is the authority on who votes.
    // A voter that leaves the configuration altogether without a context saying otherwise was
    // removed (etcd's MemberRemove): it leaves the registry below.
    // A promotion no policy command recorded is an operator's (etcd's MemberPromote).
    if (final === 'voter' && m.role !== 'voter') {
      m = { ...m, role: 'voter', promotedAtMs: atMs ?? m.promotedAtMs, promotedByPolicy: false };
    } else if (final === 'learner' && m.role === 'voter') {
      m = { ...m, role: 'standby', demotedAtMs: atMs ?? m.demotedAtMs };
    }
    if (final !== 'voter' && m.promotedByPolicy) m = { ...m, promotedByPolicy: false };
    if (placement === 'none' && restingPlacement(m.role, m.standbyMode) !== 'none') return null;
    return m;
  }

  /** Ids of the members removed from the registry, oldest first (etcd's members_removed). */
  removedIds(): readonly NodeId[] {
    return this.removed;
  }

  /** Registers or updates `m`; a removed id registered again is no longer removed. */
  private remember(m: MemberRecord): void {
    if (!this.members.has(m.id)) {
      const at = this.removed.indexOf(m.id);
      if (at >= 0) this.removed.splice(at, 1);
    }
    this.members.set(m.id, m);
  }

  /** Removes member `id`, if registered, and records it as removed. */
  private forget(id: NodeId): void {
    if (!this.members.delete(id)) return;
    this.removed.push(id);
    if (this.removed.length > REMOVED_IDS_MAX) this.removed.shift();
  }

  /** A member publishes its name and client URLs (etcd's publish), or updates its peer URLs. */
  updateAttributes(id: NodeId, patch: Partial<MemberAttributes>): boolean {
    const m = this.members.get(id);
    if (m === undefined) return false;
    this.members.set(id, {
      ...m,
      ...(patch.name === undefined ? {} : { name: patch.name }),
      ...(patch.peerUrls === undefined ? {} : { peerUrls: patch.peerUrls }),
      ...(patch.clientUrls === undefined ? {} : { clientUrls: patch.clientUrls }),
    });
    return true;
  }

  /**
   * Applies a registry command of its own log entry. Throws a RegistryError, leaving the
   * registry untouched, when the command does not fit the current state; the caller treats that
   * as a rejected no-op (the same on every member, since the state is replicated).
   */
  applyCommand(command: RegistryCommand): void {
    checkCommand(command);
    const m = this.members.get(command.id);
    if (command.kind === 'register') {
      if (m !== undefined) fail('MEMBER_EXISTS', `member ${command.id} is already registered`);
      if (this.members.size >= MEMBERS_MAX) fail('TOO_MANY_MEMBERS', `more than ${MEMBERS_MAX}`);
      if (restingPlacement('standby', command.mode) !== 'none') {
        fail('NEEDS_CONF_CHANGE', `a ${command.mode} standby joins through a membership change`);
      }
      this.applyIntent(command);
      return;
    }
    if (m === undefined) fail('UNKNOWN_MEMBER', `no member with id ${command.id}`);
    const refusal = standaloneRefusal(m, command);
    if (refusal !== null) fail('NEEDS_CONF_CHANGE', refusal);
    this.applyIntent(command);
  }

  /** A command's effect, without the placement checks (a conf change context moves placement). */
  private applyIntent(c: RegistryCommand): void {
    if (c.kind === 'register') {
      const { id, name, peerUrls, clientUrls } = c;
      const m = newMember(id, { name, peerUrls, clientUrls }, 'none');
      const registered = { ...m, zone: c.zone, standbyMode: c.mode };
      this.remember({ ...registered, snapshotEveryMs: c.snapshotEveryMs });
      return;
    }
    const m = this.members.get(c.id);
    if (m === undefined) return; // a context naming a member that left: nothing to record
    if (c.kind === 'remove') this.forget(c.id);
    else this.members.set(c.id, withIntent(m, c));
  }

  toSnapshot(): unknown {
    const rows = this.all().map((m) => [
      m.id,
      m.name,
      m.peerUrls,
      m.clientUrls,
      m.isLearner,
      m.placement,
      m.role,
      m.standbyMode,
      m.snapshotEveryMs,
      m.zone,
      m.health,
      m.healthSinceMs,
      m.promotedAtMs,
      m.demotedAtMs,
      m.lastRefreshAtMs,
      m.promotedByPolicy,
    ]);
    return { version: REGISTRY_SNAPSHOT_VERSION, members: rows, removed: [...this.removed] };
  }

  /** Reads the current snapshot form and version 1 (a bare list of 5-tuples, voters/learners). */
  static fromSnapshot(data: unknown): MemberRegistry {
    const r = new MemberRegistry();
    const rows = Array.isArray(data) ? data : snapshotRows(data);
    for (const row of rows as unknown[]) {
      assert(Array.isArray(row), 'registry snapshot row');
      const m = row.length === 5 ? fromRowV1(row) : fromRowV2(row);
      assert(!r.members.has(m.id), `duplicate member ${m.id} in registry snapshot`);
      r.members.set(m.id, m);
    }
    for (const id of Array.isArray(data) ? [] : snapshotRemoved(data)) {
      assert(typeof id === 'number', 'registry snapshot removed id');
      assertUint(id, 'registry snapshot removed id');
      if (!r.members.has(id) && !r.removed.includes(id)) r.removed.push(id);
    }
    r.removed.splice(0, Math.max(0, r.removed.length - REMOVED_IDS_MAX));
    return r;
  }
}

function snapshotRows(data: unknown): unknown[] {
  assert(typeof data === 'object' && data !== null, 'registry snapshot is not a record');
  const { version, members } = data as { version?: unknown; members?: unknown };
  assert(
    version === 2 || version === 3 || version === REGISTRY_SNAPSHOT_VERSION,
    `registry snapshot version ${String(version)}`,
  );
  assert(Array.isArray(members), 'registry snapshot members is not a list');
  return members;
}

/** Version 4's optional list of removed ids (absent before it, and in early version 4). */
function snapshotRemoved(data: unknown): unknown[] {
  const { removed } = data as { removed?: unknown };
  if (removed === undefined) return [];
  assert(Array.isArray(removed), 'registry snapshot removed is not a list');
  return removed;
}

function fromRowV1(row: unknown[]): MemberRecord {
  const [id, name, peerUrls, clientUrls, isLearner] = row as [
    number,
    string,
    string[],
    string[],
    boolean,
  ];
  return newMember(id, { name, peerUrls, clientUrls }, isLearner ? 'learner' : 'voter');
}

/**
 * A row of version 2 (14 fields), 3 (15: `lastRefreshAtMs` appended) or 4 (16:
 * `promotedByPolicy` appended; before it, every voter counts as an operator's).
 */
function fromRowV2(row: unknown[]): MemberRecord {
  assert(
    row.length === ROW_FIELDS_V2 || row.length === ROW_FIELDS_V3 || row.length === ROW_FIELDS_V4,
    'registry snapshot row',
  );
  const [id, name, peerUrls, clientUrls, isLearner, placement, role, standbyMode] = row as [
    number,
    string,
    string[],
    string[],
    boolean,
    Placement,
    Role,
    StandbyMode,
  ];
  const [snapshotEveryMs, zone, health, healthSinceMs, promotedAtMs, demotedAtMs] = row.slice(
    8,
    ROW_FIELDS_V2,
  ) as [number, string, HealthState, number, number | null, number | null];
  const lastRefreshAtMs = (row[ROW_FIELDS_V2] ?? null) as number | null;
  assert(lastRefreshAtMs === null || Number.isSafeInteger(lastRefreshAtMs), 'lastRefreshAtMs');
  const promotedByPolicy = (row[ROW_FIELDS_V3] ?? false) as boolean;
  assert(typeof promotedByPolicy === 'boolean', 'promotedByPolicy');
  assertUint(id, 'registry snapshot member id');
  assert(isLearner === (placement !== 'voter'), `member ${id}: learner flag and placement`);
  return {
    id,
    name,
    peerUrls,
    clientUrls,
    isLearner,
    placement,
    role,
    standbyMode,
    snapshotEveryMs,
    zone,
    health,
    healthSinceMs,
    promotedAtMs,
    demotedAtMs,
    promotedByPolicy: promotedByPolicy && placement === 'voter',
    lastRefreshAtMs,
  };
}

/** Why a command may not be applied on its own (outside a membership change), or null. */
function standaloneRefusal(m: MemberRecord, c: RegistryCommand): string | null {
  switch (c.kind) {
    case 'set-role':
      // Voting is Raft's business: becoming or ceasing to be a voter is a membership change.
      if (m.role === 'voter' || c.role === 'voter' || m.placement === 'voter') {
        return `member ${m.id} becomes or stops being a voter only through a membership change`;
      }
      return null;
    case 'record-promotion':
      return m.placement === 'voter' ? null : `member ${m.id} is not a voter`;
    case 'record-demotion':
      return m.placement === 'voter' ? `member ${m.id} is still a voter` : null;
    case 'record-refresh':
      return m.role === 'standby' && m.standbyMode === 'warm'
        ? null
        : `member ${m.id} is not a warm standby: only warm standbys are refreshed`;
    case 'remove':
      return m.placement === 'none'
        ? null
        : `member ${m.id} is in the Raft configuration: remove it with a membership change`;
    default:
      return null;
  }
}

function withIntent(
  m: MemberRecord,
  c: Exclude<RegistryCommand, { kind: 'register' | 'remove' }>,
): MemberRecord {
  switch (c.kind) {
    case 'set-role':
      return { ...m, role: c.role };
    case 'set-standby':
      return { ...m, standbyMode: c.mode, snapshotEveryMs: c.snapshotEveryMs };
    case 'set-zone':
      return { ...m, zone: c.zone };
    case 'record-promotion':
      return { ...m, role: 'voter', promotedAtMs: c.atMs, promotedByPolicy: c.byPolicy === true };
    case 'record-demotion':
      return { ...m, role: c.role, demotedAtMs: c.atMs, promotedByPolicy: false };
    case 'record-health':
      return { ...m, health: c.health, healthSinceMs: c.sinceMs };
    case 'record-refresh':
      // Never backwards: a record delayed behind a newer one (two leaders' clocks) is older news.
      return { ...m, lastRefreshAtMs: Math.max(c.atMs, m.lastRefreshAtMs ?? c.atMs) };
  }
}

function fail(code: RegistryErrorCode, message: string): never {
  throw new RegistryError(code, message);
}
