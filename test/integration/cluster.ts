/**
 * TEST HARNESS for integration tests: a cluster of real tandem members from the launcher
 * (src/cli/local-cluster.ts), with the tests' conventions: run from source, a temp directory
 * `tandem-it-<label>-…`, zone `local` unless a role says otherwise, heartbeat 100 ms and election
 * 1 s, started once every member published its client URL. Tests end it with
 * `destroy({ kill: true })`: SIGKILL, no graceful stop to wait for.
 */
import {
  type ConfigFields,
  LocalCluster,
  type MemberPlan,
  type MemberSpec,
  mergeConfig,
} from '../../src/cli/local-cluster.js';

export const HEARTBEAT_MS = 100;
export const ELECTION_MS = 1_000;
/** A founder's zone unless its role says otherwise. */
export const ZONE_DEFAULT = 'local';

/** A founder's role (test/integration/redundancy.test.ts); voters by default. */
export interface FounderRole {
  readonly role: 'voter' | 'replica' | 'standby';
  readonly standbyMode?: 'hot' | 'warm' | 'cold';
  readonly zone?: string;
}

export interface ClusterOptions {
  /** Number of founding members (default 3), voters unless `roles` says otherwise. */
  readonly size?: number;
  /** Founding roles by member name (n1, n2, ...). */
  readonly roles?: Readonly<Record<string, FounderRole>>;
  /** Extra YAML fields merged into every member's config. */
  readonly extraConfig?: ConfigFields;
  /** A label for the temp dir and the cluster token. */
  readonly label?: string;
  /**
   * The addresses the other founders dial for a member (default: its peer listen address);
   * e.g. TCP proxies the test controls, several for redundant links.
   */
  readonly peerAddresses?: (spec: MemberSpec) => Promise<readonly string[]> | readonly string[];
  /** TLS on every port, with a throwaway CA (see LocalClusterOptions.tls; needs openssl). */
  readonly tls?: boolean;
  /** How long the start may take (default: the launcher's). */
  readonly readyTimeoutMs?: number;
  /** A snapshot file every founder is restored from before it starts (`tandem restore`). */
  readonly restoreFrom?: string;
}

/** Starts the founders; resolves once a leader is known and every member published itself. */
export async function startCluster(options: ClusterOptions = {}): Promise<LocalCluster> {
  const label = `it-${options.label ?? 'cluster'}`;
  const plans = Array.from({ length: options.size ?? 3 }, (_, i): MemberPlan => {
    const role = options.roles?.[`n${i + 1}`];
    return role === undefined
      ? { zone: ZONE_DEFAULT }
      : {
          role: role.role,
          zone: role.zone ?? ZONE_DEFAULT,
          ...(role.standbyMode !== undefined && { standbyMode: role.standbyMode }),
        };
  });
  return LocalCluster.start({
    members: plans,
    label,
    command: 'source',
    config: mergeConfig(
      { raft: { heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS } },
      options.extraConfig ?? {},
    ),
    ...(options.peerAddresses !== undefined && { peerAddresses: options.peerAddresses }),
    ...(options.tls === true && { tls: true }),
    ...(options.readyTimeoutMs !== undefined && { readyTimeoutMs: options.readyTimeoutMs }),
    ...(options.restoreFrom !== undefined && { restoreFrom: options.restoreFrom }),
    ready: 'published',
  });
}
