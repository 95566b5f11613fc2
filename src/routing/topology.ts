/**
 * The cluster's topology from what members answer at GET /status on their client port (the
 * admin /status JSON, src/server/status.ts): the registry (roles, zones, client URLs, standbys
 * included) of the member in the highest term, and the leader that term's members name. Pure.
 */
import type { MemberDescription, MemberRole, Topology } from './router.js';

/** The fields of a member's /status this reads (ids are hex; leader '0' means none). */
export interface StatusAnswer {
  readonly memberId: string;
  readonly leader: string;
  readonly isLeader: boolean;
  readonly term: number;
  readonly registry?: readonly {
    readonly id: string;
    readonly name?: string;
    readonly clientUrls?: readonly string[];
    readonly role?: string;
    readonly zone?: string;
  }[];
  readonly members?: readonly {
    readonly id: string;
    readonly name?: string;
    readonly clientUrls?: readonly string[];
    readonly isLearner?: boolean;
  }[];
}

const ROLES = new Set<MemberRole>(['voter', 'replica', 'standby']);

/** The topology the answers describe, or null when none answered with members. */
export function topologyFrom(answers: readonly StatusAnswer[]): Topology | null {
  let best: StatusAnswer | null = null;
  for (const a of answers) {
    const rank = (x: StatusAnswer) => x.term * 2 + (x.isLeader ? 1 : 0);
    if (best === null || rank(a) > rank(best)) best = a;
  }
  if (best === null) return null;
  let leaderId: string | null = null;
  for (const a of answers) {
    if (a.term !== best.term) continue;
    if (a.isLeader) leaderId = a.memberId;
    else if (leaderId === null && a.leader !== '0' && a.leader !== '') leaderId = a.leader;
  }
  const members: MemberDescription[] = [];
  if (best.registry !== undefined && best.registry.length > 0) {
    for (const r of best.registry) {
      const url = r.clientUrls?.[0];
      if (url === undefined) continue; // not published yet: nowhere to send
      const role = ROLES.has(r.role as MemberRole) ? (r.role as MemberRole) : 'unknown';
      members.push({ id: r.id, name: r.name ?? r.id, clientUrl: url, role, zone: r.zone ?? '' });
    }
  } else {
    for (const m of best.members ?? []) {
      const url = m.clientUrls?.[0];
      if (url === undefined) continue;
      members.push({
        id: m.id,
        name: m.name ?? m.id,
        clientUrl: url,
        role: m.isLearner === true ? 'unknown' : 'voter',
        zone: '',
      });
    }
  }
  if (members.length === 0) return null;
  return { members, leaderId, term: best.term };
}
