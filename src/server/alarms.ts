/**
 * etcd's alarms (server/etcdserver/api/v3alarm/alarms.go), as replicated state: a set of
 * (member, alarm type) raised and cleared through the Raft log, so that every member holds the
 * same set, and kept in the store's meta bucket, so that it survives restarts and travels in
 * snapshots. A NOSPACE alarm caps the cluster (src/kv/state-machine.ts `capped`): writes that
 * would grow the store are refused on every member until the alarm is disarmed.
 *
 * Pure: no I/O; the state machine persists `encode()` and reads `decode()`.
 */
import { pack, unpack } from 'msgpackr';
import { assert } from '../util/assert.js';

/** etcd's AlarmType. */
export const AlarmType = { None: 0, NoSpace: 1, Corrupt: 2 } as const;
export type AlarmType = (typeof AlarmType)[keyof typeof AlarmType];
export const ALARM_TYPE_NAMES: Readonly<Record<AlarmType, string>> = {
  0: 'NONE',
  1: 'NOSPACE',
  2: 'CORRUPT',
};

/** etcd's AlarmRequest.AlarmAction values that change the set (GET reads it). */
export const AlarmAction = { Activate: 1, Deactivate: 2 } as const;
export type AlarmAction = (typeof AlarmAction)[keyof typeof AlarmAction];

/** One raised alarm (etcd's AlarmMember): member ids are uint64 on the wire. */
export interface AlarmMember {
  readonly memberId: bigint;
  readonly alarm: AlarmType;
}

/** Alarms at most: one per member and type; far more members than a cluster ever has. */
export const ALARMS_MAX = 1024;
const UINT64_MAX = (1n << 64n) - 1n;

export function isAlarmType(n: number): n is AlarmType {
  return n === AlarmType.None || n === AlarmType.NoSpace || n === AlarmType.Corrupt;
}

export class AlarmSet {
  /** Sorted by (alarm, memberId): encode() is the same bytes on every member. */
  private members: AlarmMember[] = [];

  static decode(bytes: Uint8Array | undefined): AlarmSet {
    const set = new AlarmSet();
    if (bytes === undefined) return set;
    const rows = unpack(bytes) as [string, number][];
    assert(Array.isArray(rows), 'stored alarms are a list');
    for (const [id, alarm] of rows) {
      assert(isAlarmType(alarm) && alarm !== AlarmType.None, `stored alarm type ${alarm}`);
      set.activate(BigInt(id), alarm);
    }
    return set;
  }

  encode(): Uint8Array {
    return pack(this.members.map((m) => [m.memberId.toString(), m.alarm]));
  }

  /**
   * etcd's Activate: the alarm as now raised (the one already raised, if any); null for NONE,
   * which raises nothing, or when the set is full.
   */
  activate(memberId: bigint, alarm: AlarmType): AlarmMember | null {
    assert(memberId >= 0n && memberId <= UINT64_MAX, 'alarm member id is a uint64');
    if (alarm === AlarmType.None) return null;
    const existing = this.find(memberId, alarm);
    if (existing !== undefined) return existing;
    if (this.members.length >= ALARMS_MAX) return null;
    const raised = { memberId, alarm };
    this.members.push(raised);
    this.members.sort(compareAlarms);
    return raised;
  }

  /** etcd's Deactivate: the alarm cleared, or null when it was not raised. */
  deactivate(memberId: bigint, alarm: AlarmType): AlarmMember | null {
    const existing = this.find(memberId, alarm);
    if (existing === undefined) return null;
    this.members = this.members.filter((m) => m !== existing);
    return existing;
  }

  /** etcd's Get: alarms of one type, or every alarm for NONE. */
  list(alarm: AlarmType = AlarmType.None): readonly AlarmMember[] {
    return alarm === AlarmType.None
      ? [...this.members]
      : this.members.filter((m) => m.alarm === alarm);
  }

  /** Asked on every applied KV command: a plain loop, no closure. */
  has(alarm: AlarmType): boolean {
    for (const m of this.members) if (m.alarm === alarm) return true;
    return false;
  }

  private find(memberId: bigint, alarm: AlarmType): AlarmMember | undefined {
    return this.members.find((m) => m.memberId === memberId && m.alarm === alarm);
  }
}

function compareAlarms(a: AlarmMember, b: AlarmMember): number {
  if (a.alarm !== b.alarm) return a.alarm - b.alarm;
  return a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0;
}

/** How etcd's Status lists a raised alarm in `errors` (Go's text form of AlarmMember). */
export function alarmStatusText(m: AlarmMember): string {
  return `memberID:${m.memberId} alarm:${ALARM_TYPE_NAMES[m.alarm]} `;
}

/** The log command of an alarm change: [action, member id (decimal), alarm type]. */
export function encodeAlarmPayload(action: AlarmAction, memberId: bigint, alarm: AlarmType) {
  return pack([action, memberId.toString(), alarm]);
}

/** Null when the payload is not an alarm change (the same no-op on every member). */
export function decodeAlarmPayload(
  payload: Uint8Array,
): { action: AlarmAction; memberId: bigint; alarm: AlarmType } | null {
  try {
    const [action, id, alarm] = unpack(payload) as [unknown, unknown, unknown];
    if (action !== AlarmAction.Activate && action !== AlarmAction.Deactivate) return null;
    if (typeof id !== 'string' || !/^\d{1,20}$/.test(id) || typeof alarm !== 'number') return null;
    const memberId = BigInt(id);
    if (memberId > UINT64_MAX || !isAlarmType(alarm)) return null;
    return { action, memberId, alarm };
  } catch {
    return null;
  }
}
