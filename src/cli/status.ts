/**
 * `tandem status`: asks each member's admin endpoint for its view and prints one table (or JSON).
 * Lag is the leader's commit index minus the member's applied index.
 */

export interface StatusRow {
  readonly endpoint: string;
  readonly name: string;
  readonly memberId: string;
  readonly role: string;
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
  members: { id: string; name: string; isLearner: boolean }[];
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
  return answers.map(({ endpoint, status, error }): StatusRow => {
    if (status === null) {
      return {
        endpoint,
        name: '?',
        memberId: '?',
        role: 'unreachable',
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
      role: status.isLeader ? 'leader' : self?.isLearner ? 'learner' : 'voter',
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
  const header = ['NAME', 'ID', 'ROLE', 'TERM', 'COMMIT', 'APPLIED', 'LAG', 'REVISION', 'ADMIN'];
  const body = rows.map((r) => [
    r.name,
    r.memberId,
    r.error === null ? r.role : `unreachable (${r.error})`,
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
