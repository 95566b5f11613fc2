/**
 * `tandem status`: asks each member's admin endpoint for its view and prints one table (or JSON).
 * Lag is the leader's commit index minus the member's applied index; role, standby mode, zone and
 * the learner flag are the leader's registry's when a leader answers (a standby's own copy can
 * lag behind), else each member's own, and the table says whose (`roleView`, the last line);
 * health is the leader's live failure-detector view; STALE is a
 * warm or cold standby's staleness (seconds since it last applied anything, see
 * src/server/metrics.ts).
 */
import { toAddress } from './addresses.js';
import { type AdminClientTls, adminRequest } from './local-net.js';

export interface StatusRow {
  readonly endpoint: string;
  readonly name: string;
  readonly memberId: string;
  /** voter | replica | standby (the registry's, as `roleView` says whose), or unreachable. */
  readonly role: string;
  /** The member's standby mode (its mode whenever it is a standby). */
  readonly standbyMode: string;
  readonly zone: string;
  /** The leader's live health view when the leader answered, else the recorded one. */
  readonly health: string;
  readonly isLearner: boolean;
  readonly isLeader: boolean;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lag: number;
  /** A warm or cold standby's staleness (seconds since it last applied anything), else null. */
  readonly standbyStalenessSeconds: number | null;
  readonly revision: number;
  /**
   * Whose registry the role, mode, zone and learner flag come from: `leader <name>` when a leader
   * answered and has the member, `own` otherwise (the member's copy, possibly stale), '' when
   * the member did not answer.
   */
  readonly roleView: string;
  readonly error: string | null;
}

/** One member of an admin /status `registry` list (a MemberRecord, id in hex). */
interface RegistryEntry {
  id: string;
  name?: string;
  role?: string;
  standbyMode?: string;
  zone?: string;
  isLearner?: boolean;
  health: string;
}

/** An admin endpoint's /status answer (src/cli/node.ts), the fields read here. */
export interface AdminStatus {
  name: string;
  memberId: string;
  leader: string;
  isLeader: boolean;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  revision: number;
  role?: string;
  standbyMode?: string;
  zone?: string;
  health?: string;
  standbyStalenessSeconds?: number | null;
  members: { id: string; name: string; isLearner: boolean }[];
  registry?: RegistryEntry[];
}

/** What one admin endpoint answered (status null: no answer, `error` says why). */
export interface StatusAnswer {
  readonly endpoint: string;
  readonly status: AdminStatus | null;
  readonly error: string | null;
}

const STATUS_TIMEOUT_MS = 2000;

/**
 * Each endpoint's GET /status: `host:port` or `http://host:port`, or over HTTPS (config
 * `tls.admin`) `https://host:port` or any endpoint when `tls` is given (its CA, and a client
 * certificate for an endpoint that checks them).
 */
export async function queryStatus(
  endpoints: readonly string[],
  tls?: AdminClientTls,
): Promise<StatusRow[]> {
  const answers: StatusAnswer[] = await Promise.all(
    endpoints.map(async (endpoint) => {
      const secure = tls ?? (endpoint.startsWith('https://') ? {} : undefined);
      try {
        const status = await adminRequest<AdminStatus>(
          toAddress(endpoint),
          'GET',
          '/status',
          undefined,
          STATUS_TIMEOUT_MS,
          secure,
        );
        return { endpoint, status, error: null };
      } catch (error) {
        return { endpoint, status: null, error: (error as Error).message };
      }
    }),
  );
  return statusRows(answers);
}

/**
 * The rows for what the endpoints answered (pure). The leader is the answering member that says
 * it leads with the highest term (an old leader cut off may still believe it leads).
 */
export function statusRows(answers: readonly StatusAnswer[]): StatusRow[] {
  let leader: AdminStatus | null = null;
  for (const { status } of answers) {
    if (status?.isLeader === true && (leader === null || status.term > leader.term)) {
      leader = status;
    }
  }
  const leaderCommit = leader?.commitIndex ?? 0;
  const leaderView = leader?.registry ?? [];
  // An endpoint that did not answer cannot say who it is. When exactly one member of the
  // leader's registry is missing from the answers and exactly one endpoint failed, it is that
  // member; otherwise the row stays '?'.
  const answeredIds = new Set(answers.map((a) => a.status?.memberId));
  const silent = leaderView.filter((m) => !answeredIds.has(m.id));
  const failed = answers.filter((a) => a.status === null).length;
  const known = failed === 1 && silent.length === 1 ? silent[0]! : null;
  return answers.map(({ endpoint, status, error }): StatusRow => {
    if (status === null) {
      return {
        endpoint,
        name: known?.name ?? '?',
        memberId: known?.id ?? '?',
        role: 'unreachable',
        standbyMode: '?',
        zone: known?.zone || '?',
        health: known?.health ?? 'unreachable',
        isLearner: false,
        isLeader: false,
        term: 0,
        commitIndex: 0,
        appliedIndex: 0,
        lag: 0,
        standbyStalenessSeconds: null,
        revision: 0,
        roleView: '',
        error: error ?? 'no answer',
      };
    }
    const self = status.members.find((m) => m.id === status.memberId);
    const led = leaderView.find((m) => m.id === status.memberId);
    // A member outside the leader's configuration (warm, cold standby) is in its registry, not
    // in its etcd member list: the registry entry's learner flag (false: not in Raft) is the one.
    const ownIsLearner = self?.isLearner ?? true;
    return {
      endpoint,
      name: status.name,
      memberId: status.memberId,
      role: led?.role ?? status.role ?? (ownIsLearner ? 'learner' : 'voter'),
      standbyMode: led?.standbyMode ?? status.standbyMode ?? '?',
      zone: led?.zone || status.zone || '?',
      health: led?.health ?? status.health ?? 'unknown',
      isLearner: led?.isLearner ?? ownIsLearner,
      isLeader: status.isLeader,
      term: status.term,
      commitIndex: status.commitIndex,
      appliedIndex: status.appliedIndex,
      lag: Math.max(0, leaderCommit - status.appliedIndex),
      standbyStalenessSeconds: status.standbyStalenessSeconds ?? null,
      revision: status.revision,
      roleView: led?.role === undefined || leader === null ? 'own' : `leader ${leader.name}`,
      error: null,
    };
  });
}

/** The table's last line: whose registry ROLE, MODE and ZONE come from. */
function roleViewNote(rows: readonly StatusRow[]): string {
  const answered = rows.filter((r) => r.error === null);
  const views = new Set(answered.map((r) => r.roleView));
  if (views.size === 0) return 'roles: no member answered';
  const leaderView = [...views].find((v) => v.startsWith('leader '));
  if (leaderView === undefined) {
    return "roles: each member's own registry (no leader answered: a standby's may be stale)";
  }
  const own = answered.filter((r) => r.roleView === 'own').map((r) => r.name);
  const rest = own.length === 0 ? '' : `; ${own.join(', ')}: own registry (not in the leader's)`;
  return `roles: ${leaderView}'s registry${rest}`;
}

export function formatStatusTable(rows: readonly StatusRow[]): string {
  const header = [
    'NAME',
    'ID',
    'ROLE',
    'MODE',
    'ZONE',
    'LEADER',
    'HEALTH',
    'TERM',
    'COMMIT',
    'APPLIED',
    'LAG',
    'STALE',
    'REVISION',
    'ADMIN',
  ];
  const body = rows.map((r) => [
    r.name,
    r.memberId,
    r.error === null ? r.role : `unreachable (${r.error})`,
    r.role === 'standby' ? r.standbyMode : '-',
    r.zone,
    r.isLeader ? '*' : '',
    r.health,
    String(r.term),
    String(r.commitIndex),
    String(r.appliedIndex),
    String(r.lag),
    r.standbyStalenessSeconds === null ? '-' : `${Math.floor(r.standbyStalenessSeconds)}s`,
    String(r.revision),
    r.endpoint,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    `${cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()}\n`;
  return `${line(header)}${body.map(line).join('')}${roleViewNote(rows)}\n`;
}
