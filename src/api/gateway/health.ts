/**
 * etcd 3.5's `GET /health` and `GET /version` on the client port
 * (server/etcdserver/api/etcdhttp/health.go, base.go): healthy when the member knows a leader
 * and a linearizable read (keys only, limit 1) succeeds; `?serializable=true` skips the leader
 * check and reads locally. A raised alarm (NOSPACE, CORRUPT) makes the member unhealthy, as
 * etcd says it, unless the alarm is named in `?exclude=`.
 */
import type { EtcdBackend } from '../../server/contract.js';
import { ServerError } from '../../server/errors.js';
import { rangeFromPb } from '../convert.js';
import { toWireStatus } from '../errors.js';
import type { PbRangeRequest } from '../proto.js';

/** etcd waits its request timeout (5 s plus two election timeouts); tandem waits this long. */
export const HEALTH_READ_TIMEOUT_MS = 5_000;

export interface Health {
  readonly health: 'true' | 'false';
  readonly reason: string;
}

/** The smallest key, keys only, one of them: the cheapest read that proves the read path. */
const PROBE: PbRangeRequest = {
  key: Buffer.from([0]),
  rangeEnd: Buffer.alloc(0),
  limit: '1',
  revision: '0',
  sortOrder: 0,
  sortTarget: 0,
  serializable: false,
  keysOnly: true,
  countOnly: false,
  minModRevision: '0',
  maxModRevision: '0',
  minCreateRevision: '0',
  maxCreateRevision: '0',
};

export async function checkHealth(
  backend: EtcdBackend,
  serializable: boolean,
  excludedAlarms: ReadonlySet<string> = new Set(),
): Promise<Health> {
  const status = await backend.status();
  // Status lists raised alarms in `errors` as etcd does ("memberID:… alarm:NOSPACE ").
  for (const error of status.errors) {
    const alarm = /\balarm:([A-Z]+)/.exec(error)?.[1];
    if (alarm === undefined || excludedAlarms.has(alarm)) continue;
    const known = alarm === 'NOSPACE' || alarm === 'CORRUPT';
    return { health: 'false', reason: `ALARM ${known ? alarm : 'UNKNOWN'}` };
  }
  if (!serializable && status.leader === 0n) return { health: 'false', reason: 'RAFT NO LEADER' };
  try {
    await backend.range(rangeFromPb({ ...PROBE, serializable }), {
      consistency: { kind: serializable ? 'serializable' : 'linearizable' },
      ack: 'quorum',
      signal: AbortSignal.timeout(HEALTH_READ_TIMEOUT_MS),
    });
  } catch (err) {
    // A standby (or a member confirming its role) serves clients by forwarding them: it is
    // healthy when it knows a leader, checked above. Unhealthy, a probe would restart it.
    if (err instanceof ServerError && err.code === 'STANDBY') return { health: 'true', reason: '' };
    return { health: 'false', reason: `RANGE ERROR:${toWireStatus(err).details}` };
  }
  return { health: 'true', reason: '' };
}

/** etcd's version.Versions: the server's version and the cluster's (major.minor.0). */
export async function versions(
  backend: EtcdBackend,
): Promise<{ etcdserver: string; etcdcluster: string }> {
  const server = (await backend.status()).version;
  const [major = '3', minor = '0'] = server.split('.');
  return { etcdserver: server, etcdcluster: `${major}.${minor}.0` };
}
