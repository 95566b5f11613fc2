/**
 * The config fields a `TANDEM_<FIELD>` environment variable or a `--<field>` flag may set. Kept
 * apart from config.ts (zod, yaml) because the CLI lists these flags before it knows whether a
 * command will load a config at all, and importing the schema costs a tenth of a second.
 */

export type OverrideKind = 'string' | 'int' | 'bool' | 'nullable' | 'peers';

export interface ConfigOverride {
  /** The field path, e.g. `listen.client`. */
  readonly path: string;
  /** e.g. `TANDEM_LISTEN_CLIENT`. */
  readonly env: string;
  /** The flag without dashes, e.g. `listen-client`. */
  readonly flag: string;
  readonly kind: OverrideKind;
  /** Paths given on the command line or in the environment resolve against the working dir. */
  readonly isPath: boolean;
}

const OVERRIDABLE: readonly [path: string, kind: OverrideKind, isPath?: boolean][] = [
  ['name', 'string'],
  ['dataDir', 'string', true],
  ['listen.client', 'string'],
  ['listen.peer', 'string'],
  ['listen.admin', 'string'],
  ['zone', 'string'],
  ['role', 'string'],
  ['peers', 'peers'],
  ['cluster.state', 'string'],
  ['cluster.token', 'string'],
  // The secret itself only in a file (a flag's value shows in `ps`): its path may be overridden.
  ['cluster.secretFile', 'nullable', true],
  ['replication.voters', 'int'],
  ['replication.ack', 'string'],
  ['replication.readDefault', 'string'],
  ['replication.preferLeaderZone', 'nullable'],
  ['redundancy.replaceAfter', 'string'],
  ['redundancy.preferSameZone', 'bool'],
  ['redundancy.standby.mode', 'string'],
  ['redundancy.standby.snapshotEvery', 'string'],
  ['wal.mirror', 'nullable', true],
  ['wal.segmentBytes', 'string'],
  ['quota.backendBytes', 'string'],
  ['limits.leasesMax', 'int'],
  ['limits.concurrentStreamsMax', 'int'],
  ['limits.grpcKeepaliveMinTime', 'string'],
  ['limits.grpcKeepalivePermitWithoutStream', 'bool'],
  ['raft.heartbeatMs', 'int'],
  ['raft.electionMs', 'int'],
  ['raft.snapshotEntries', 'int'],
  ['raft.fastFailover', 'bool'],
  ['tls.client.cert', 'string', true],
  ['tls.client.key', 'string', true],
  ['tls.client.ca', 'nullable', true],
  ['tls.peer.cert', 'string', true],
  ['tls.peer.key', 'string', true],
  ['tls.peer.ca', 'string', true],
  ['tls.peer.checkNames', 'bool'],
  ['tls.admin.cert', 'string', true],
  ['tls.admin.key', 'string', true],
  ['tls.admin.ca', 'nullable', true],
  ['testMode.faultInjection', 'bool'],
];

/** `listen.client` → `LISTEN_CLIENT`, `dataDir` → `DATA_DIR`. */
function screamingSnake(path: string): string {
  return path
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replaceAll('.', '_')
    .toUpperCase();
}

export const CONFIG_OVERRIDES: readonly ConfigOverride[] = OVERRIDABLE.map(
  ([path, kind, isPath]) => ({
    path,
    env: `TANDEM_${screamingSnake(path)}`,
    flag: screamingSnake(path).toLowerCase().replaceAll('_', '-'),
    kind,
    isPath: isPath === true,
  }),
);

/**
 * `TANDEM_*` variables that are not config fields (read elsewhere), so not typos. The code-cache
 * pair is read by bin/tandem.js before any config exists.
 */
export const ENV_NOT_CONFIG: ReadonlySet<string> = new Set([
  'TANDEM_CONFIG',
  'TANDEM_LOG_LEVEL',
  'TANDEM_CODE_CACHE',
  'TANDEM_CODE_CACHE_DIR',
  // bench/put-trace.ts: where a member writes its entry trace (src/cli/entry-trace.ts).
  'TANDEM_TRACE_DIR',
]);
