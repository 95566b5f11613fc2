/**
 * Registry commands: the changes to the member registry that go through the Raft log, as plain
 * data with a compact msgpack encoding. A command travels either in a log entry of its own
 * (`encodeRegistryCommand`) or inside a membership change's context (`encodeChangeContext`), so a
 * promotion and the record of it commit in one entry.
 *
 * Encoding: `[version, kindCode, ...fields]`, the version being the lowest that knows the kind
 * (`KIND_SINCE_VERSION`), so a member of an older version still decodes every command it knows
 * and rejects the others as a no-op; a context is
 * `[CHANGE_CONTEXT_TAG, version, atMs, [command, ...]]` (four elements, so the member-attribute
 * decoder, which wants three, never mistakes one for the other).
 */
import { pack, unpack } from 'msgpackr';
import type { NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { TandemError } from '../util/errors.js';

export type Role = 'voter' | 'replica' | 'standby';
export type StandbyMode = 'hot' | 'warm' | 'cold';
export type HealthState = 'healthy' | 'lagging' | 'unreachable';

export const ROLES: readonly Role[] = ['voter', 'replica', 'standby'];
export const STANDBY_MODES: readonly StandbyMode[] = ['hot', 'warm', 'cold'];
export const HEALTH_STATES: readonly HealthState[] = ['healthy', 'lagging', 'unreachable'];

/**
 * The newest command encoding this member reads. Version 2 added `record-refresh`; every kind of
 * version 1 is still written as version 1, so a version-1 member in a mixed cluster rejects
 * (as a no-op, src/server/tandem-state-machine.ts) only the commands it cannot know.
 */
export const REGISTRY_COMMAND_VERSION = 2;
/** Change contexts stay at version 1: an older member fails to apply a context it cannot read. */
const CHANGE_CONTEXT_VERSION = 1;
const CHANGE_CONTEXT_TAG = 'tandem.registry';
/** Commands one membership change carries (a replacement needs two). */
export const CONTEXT_COMMANDS_MAX = 4;
/** Zone names appear in metrics labels (as member names do: src/cli/config.ts). */
export const ZONE_LENGTH_MAX = 63;
export const SNAPSHOT_EVERY_MS_MIN = 1000;
export const SNAPSHOT_EVERY_MS_MAX = 24 * 3600_000;
export const SNAPSHOT_EVERY_MS_DEFAULT = 60_000;
/** A member's name, in characters (registry attributes and `register` commands alike). */
export const NAME_LENGTH_MAX = 256;
/** Peer URLs, and client URLs, per member. */
export const URLS_MAX = 8;

assert(
  SNAPSHOT_EVERY_MS_MIN <= SNAPSHOT_EVERY_MS_DEFAULT &&
    SNAPSHOT_EVERY_MS_DEFAULT <= SNAPSHOT_EVERY_MS_MAX,
  'default snapshot interval within its limits',
);

export type RegistryCommand =
  /** A warm or cold standby joins: registered, outside the Raft configuration. */
  | {
      readonly kind: 'register';
      readonly id: NodeId;
      readonly name: string;
      readonly peerUrls: readonly string[];
      readonly clientUrls: readonly string[];
      readonly zone: string;
      readonly mode: StandbyMode;
      readonly snapshotEveryMs: number;
    }
  /** Between non-voting roles (replica <-> standby); voting changes need a membership change. */
  | { readonly kind: 'set-role'; readonly id: NodeId; readonly role: Role }
  | {
      readonly kind: 'set-standby';
      readonly id: NodeId;
      readonly mode: StandbyMode;
      readonly snapshotEveryMs: number;
    }
  | { readonly kind: 'set-zone'; readonly id: NodeId; readonly zone: string }
  /**
   * `byPolicy`: the redundancy policy promoted it (replace, restore), so it may demote it again
   * when the voters outnumber the policy (policy.ts rule 3, trim). Absent or false: an operator
   * did. A trailing field added after version 1: older members read the command without it.
   */
  | {
      readonly kind: 'record-promotion';
      readonly id: NodeId;
      readonly atMs: number;
      readonly byPolicy?: boolean;
    }
  /** `role`: what the demoted voter becomes (a standby, or a replica on `member demote`). */
  | {
      readonly kind: 'record-demotion';
      readonly id: NodeId;
      readonly atMs: number;
      readonly role: 'standby' | 'replica';
    }
  | {
      readonly kind: 'record-health';
      readonly id: NodeId;
      readonly health: HealthState;
      readonly sinceMs: number;
    }
  /** Unregisters a member outside the Raft configuration. */
  | { readonly kind: 'remove'; readonly id: NodeId }
  /**
   * A warm standby caught up with the log at `atMs` (wall-clock ms since the epoch: the only
   * clock members share; the leaders' monotonic clocks are not comparable across processes).
   * Since version 2; a registry entry of its own, never in a change context.
   */
  | { readonly kind: 'record-refresh'; readonly id: NodeId; readonly atMs: number };

export type RegistryCommandKind = RegistryCommand['kind'];

export type RegistryErrorCode =
  | 'BAD_MEMBER_ATTRIBUTES'
  | 'BAD_REGISTRY_COMMAND'
  | 'UNKNOWN_MEMBER'
  | 'MEMBER_EXISTS'
  | 'TOO_MANY_MEMBERS'
  | 'NEEDS_CONF_CHANGE';
export class RegistryError extends TandemError<RegistryErrorCode> {}

// The wire codes: append only, never renumber (entries in old logs keep their meaning).
const KIND_CODES: Readonly<Record<RegistryCommandKind, number>> = {
  register: 1,
  'set-role': 2,
  'set-standby': 3,
  'set-zone': 4,
  'record-promotion': 5,
  'record-demotion': 6,
  'record-health': 7,
  remove: 8,
  'record-refresh': 9,
};
/** The command version that introduced each kind (the version written for it). */
const KIND_SINCE_VERSION: Readonly<Record<RegistryCommandKind, number>> = {
  register: 1,
  'set-role': 1,
  'set-standby': 1,
  'set-zone': 1,
  'record-promotion': 1,
  'record-demotion': 1,
  'record-health': 1,
  remove: 1,
  'record-refresh': 2,
};
assert(
  Object.values(KIND_SINCE_VERSION).every((v) => v >= 1 && v <= REGISTRY_COMMAND_VERSION),
  'every command kind within a known version',
);
const KINDS_BY_CODE = new Map(Object.entries(KIND_CODES).map(([k, v]) => [v, k])) as Map<
  number,
  RegistryCommandKind
>;

function bad(message: string): never {
  throw new RegistryError('BAD_REGISTRY_COMMAND', message);
}

function checkTime(ms: number, what: string): void {
  if (!Number.isSafeInteger(ms) || ms < 0) bad(`${what} must be a non-negative integer of ms`);
}

function checkZone(zone: string): void {
  if (zone.length > ZONE_LENGTH_MAX) bad(`zone longer than ${ZONE_LENGTH_MAX} characters`);
}

function checkStandby(mode: StandbyMode, snapshotEveryMs: number): void {
  if (!STANDBY_MODES.includes(mode)) bad(`standby mode must be hot, warm or cold, got ${mode}`);
  if (
    !Number.isSafeInteger(snapshotEveryMs) ||
    snapshotEveryMs < SNAPSHOT_EVERY_MS_MIN ||
    snapshotEveryMs > SNAPSHOT_EVERY_MS_MAX
  ) {
    bad(`snapshotEveryMs must be in [${SNAPSHOT_EVERY_MS_MIN}, ${SNAPSHOT_EVERY_MS_MAX}]`);
  }
}

/** Validates a command's fields (not whether it fits the registry: see applyCommand). */
export function checkCommand(c: RegistryCommand): void {
  if (!Number.isSafeInteger(c.id) || c.id <= 0) bad(`member id must be positive, got ${c.id}`);
  switch (c.kind) {
    case 'register':
      if (c.name.length > NAME_LENGTH_MAX) bad(`member name longer than ${NAME_LENGTH_MAX}`);
      if (c.peerUrls.length === 0 || c.peerUrls.length > URLS_MAX) {
        bad(`a registered member has 1 to ${URLS_MAX} peer URLs`);
      }
      if (c.clientUrls.length > URLS_MAX) bad(`more than ${URLS_MAX} client URLs`);
      checkZone(c.zone);
      checkStandby(c.mode, c.snapshotEveryMs);
      return;
    case 'set-role':
      if (!ROLES.includes(c.role)) bad(`role must be voter, replica or standby, got ${c.role}`);
      return;
    case 'set-standby':
      checkStandby(c.mode, c.snapshotEveryMs);
      return;
    case 'set-zone':
      checkZone(c.zone);
      return;
    case 'record-promotion':
      checkTime(c.atMs, 'atMs');
      if (c.byPolicy !== undefined && typeof c.byPolicy !== 'boolean') bad('byPolicy: a boolean');
      return;
    case 'record-refresh':
      checkTime(c.atMs, 'atMs');
      return;
    case 'record-demotion':
      checkTime(c.atMs, 'atMs');
      if (c.role !== 'standby' && c.role !== 'replica') bad(`a demoted voter becomes ${c.role}`);
      return;
    case 'record-health':
      checkTime(c.sinceMs, 'sinceMs');
      if (!HEALTH_STATES.includes(c.health)) bad(`unknown health state ${c.health}`);
      return;
    case 'remove':
      return;
  }
}

function fields(c: RegistryCommand): unknown[] {
  switch (c.kind) {
    case 'register':
      return [c.name, c.peerUrls, c.clientUrls, c.zone, c.mode, c.snapshotEveryMs];
    case 'set-role':
      return [c.role];
    case 'set-standby':
      return [c.mode, c.snapshotEveryMs];
    case 'set-zone':
      return [c.zone];
    case 'record-promotion':
      // Written only when set: an operator's promotion encodes as it always did.
      return c.byPolicy === true ? [c.atMs, true] : [c.atMs];
    case 'record-refresh':
      return [c.atMs];
    case 'record-demotion':
      return [c.atMs, c.role];
    case 'record-health':
      return [c.health, c.sinceMs];
    case 'remove':
      return [];
  }
}

function toRow(c: RegistryCommand): unknown[] {
  checkCommand(c);
  return [KIND_CODES[c.kind], c.id, ...fields(c)];
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isStrs = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);
const isNum = (v: unknown): v is number => typeof v === 'number';

/**
 * Builds a command from a decoded row of encoding `version`; shapes are checked here, values by
 * checkCommand. A kind newer than the row's version is not one that version could write.
 */
function fromRow(row: unknown, version: number): RegistryCommand {
  if (!Array.isArray(row) || row.length < 2) bad('a registry command is a list');
  const [code, id, ...f] = row as unknown[];
  const kind = isNum(code) ? KINDS_BY_CODE.get(code) : undefined;
  if (kind === undefined || !isNum(id) || KIND_SINCE_VERSION[kind] > version) {
    bad(`unknown registry command ${String(code)} in version ${version}`);
  }
  const c = build(kind, id, f);
  checkCommand(c);
  return c;
}

function build(kind: RegistryCommandKind, id: number, f: unknown[]): RegistryCommand {
  const [a, b, c, d, e, g] = f;
  switch (kind) {
    case 'register':
      if (!isStr(a) || !isStrs(b) || !isStrs(c) || !isStr(d) || !isStr(e) || !isNum(g)) break;
      return {
        kind,
        id,
        name: a,
        peerUrls: b,
        clientUrls: c,
        zone: d,
        mode: e as StandbyMode,
        snapshotEveryMs: g,
      };
    case 'set-role':
      if (!isStr(a)) break;
      return { kind, id, role: a as Role };
    case 'set-standby':
      if (!isStr(a) || !isNum(b)) break;
      return { kind, id, mode: a as StandbyMode, snapshotEveryMs: b };
    case 'set-zone':
      if (!isStr(a)) break;
      return { kind, id, zone: a };
    case 'record-promotion':
      if (!isNum(a) || (b !== undefined && b !== true)) break;
      return b === true ? { kind, id, atMs: a, byPolicy: true } : { kind, id, atMs: a };
    case 'record-refresh':
      if (!isNum(a)) break;
      return { kind, id, atMs: a };
    case 'record-demotion':
      if (!isNum(a) || !isStr(b)) break;
      return { kind, id, atMs: a, role: b as 'standby' };
    case 'record-health':
      if (!isStr(a) || !isNum(b)) break;
      return { kind, id, health: a as HealthState, sinceMs: b };
    case 'remove':
      return { kind, id };
  }
  return bad(`malformed ${kind} command`);
}

export function encodeRegistryCommand(c: RegistryCommand): Uint8Array {
  return pack([KIND_SINCE_VERSION[c.kind], ...toRow(c)]);
}

/** Throws a RegistryError ('BAD_REGISTRY_COMMAND') on anything but a valid command. */
export function decodeRegistryCommand(bytes: Uint8Array): RegistryCommand {
  let v: unknown;
  try {
    v = unpack(bytes);
  } catch (cause) {
    throw new RegistryError('BAD_REGISTRY_COMMAND', 'undecodable registry command', { cause });
  }
  const version: unknown = Array.isArray(v) ? v[0] : undefined;
  if (!isNum(version) || !Number.isInteger(version) || version < 1) bad('not a registry command');
  if (version > REGISTRY_COMMAND_VERSION) bad(`registry command version ${version} is newer`);
  return fromRow((v as unknown[]).slice(1), version);
}

/** What the policy's membership changes carry: when they were planned and what they record. */
export interface ChangeContext {
  readonly atMs: number;
  readonly commands: readonly RegistryCommand[];
}

export function encodeChangeContext(ctx: ChangeContext): Uint8Array {
  checkTime(ctx.atMs, 'atMs');
  if (ctx.commands.length > CONTEXT_COMMANDS_MAX) bad('too many commands in a change context');
  for (const c of ctx.commands) {
    if (KIND_SINCE_VERSION[c.kind] > CHANGE_CONTEXT_VERSION) bad(`${c.kind} in a change context`);
  }
  return pack([CHANGE_CONTEXT_TAG, CHANGE_CONTEXT_VERSION, ctx.atMs, ctx.commands.map(toRow)]);
}

/**
 * The policy context of a membership change, or null when the context is something else
 * (empty, member attributes). A context with the tag that does not decode is an error: it was
 * written by a member of this version and a garbled one must not pass silently.
 */
export function decodeChangeContext(bytes: Uint8Array): ChangeContext | null {
  if (bytes.length === 0) return null;
  let v: unknown;
  try {
    v = unpack(bytes);
  } catch {
    return null;
  }
  if (!Array.isArray(v) || v.length !== 4 || v[0] !== CHANGE_CONTEXT_TAG) return null;
  const [, version, atMs, rows] = v as unknown[];
  if (version !== CHANGE_CONTEXT_VERSION || !isNum(atMs) || !Array.isArray(rows)) {
    bad('malformed change context');
  }
  if (rows.length > CONTEXT_COMMANDS_MAX) bad('too many commands in a change context');
  checkTime(atMs, 'atMs');
  return { atMs, commands: rows.map((row) => fromRow(row, CHANGE_CONTEXT_VERSION)) };
}
