/**
 * `tandem status`: asks each member's admin endpoint for its view and prints one table (or JSON).
 * Lag is the leader's commit index minus the member's applied index; role, standby mode and zone
 * are the replicated registry's; health is the leader's live failure-detector view.
 */

export interface StatusRow {
  readonly endpoint: string;
  readonly name: string;
  readonly memberId: string;
  /** voter | replica | standby (the replicated registry's), or unreachable. */
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
  readonly revision: number;
  readonly error: string | null;
}

interface AdminStatus {
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
  members: { id: string; name: string; isLearner: boolean }[];
  registry?: { id: string; health: string }[];
}

const STATUS_TIMEOUT_MS = 2000;

export async function queryStatus(endpoints: readonly string[]): Promise<StatusRow[]> {
  const answers = await Promise.all(
    endpoints.map(async (endpoint) => {
      try {
        const res = await fetch(`http://${endpoint}/status`, {
          signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
        });
        return { endpoint, status: (await res.json()) as AdminStatus, error: null };
      } catch (error) {
        return { endpoint, status: null, error: (error as Error).message };
      }
    }),
  );
  const leaderCommit = Math.max(
    0,
    ...answers.filter((a) => a.status?.isLeader).map((a) => a.status!.commitIndex),
  );
  const leaderView = answers.find((a) => a.status?.isLeader)?.status?.registry ?? [];
  return answers.map(({ endpoint, status, error }): StatusRow => {
    if (status === null) {
      return {
        endpoint,
        name: '?',
        memberId: '?',
        role: 'unreachable',
        standbyMode: '?',
        zone: '?',
        health: 'unreachable',
        isLearner: false,
        isLeader: false,
        term: 0,
        commitIndex: 0,
        appliedIndex: 0,
        lag: 0,
        revision: 0,
        error,
      };
    }
    const self = status.members.find((m) => m.id === status.memberId);
    return {
      endpoint,
      name: status.name,
      memberId: status.memberId,
      role: status.role ?? (self?.isLearner ? 'learner' : 'voter'),
      standbyMode: status.standbyMode ?? '?',
      zone: status.zone ?? '?',
      health:
        leaderView.find((m) => m.id === status.memberId)?.health ?? status.health ?? 'unknown',
      isLearner: self?.isLearner ?? true,
      isLeader: status.isLeader,
      term: status.term,
      commitIndex: status.commitIndex,
      appliedIndex: status.appliedIndex,
      lag: Math.max(0, leaderCommit - status.appliedIndex),
      revision: status.revision,
      error: null,
    };
  });
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
    String(r.revision),
    r.endpoint,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    `${cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()}\n`;
  return line(header) + body.map(line).join('');
}
