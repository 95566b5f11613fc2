/**
 * What the benchmarks need from a cluster, whichever database runs it (etcd-cluster.ts,
 * tandem-cluster.ts): endpoints for the load generator, and for failover trials a way to find
 * the leader, kill -9 a member and start it again on the same ports and data.
 */
import { adminRequest, FatalWait, waitFor } from '../src/cli/local-net.js';
import type { LocalProcess } from '../src/cli/local-process.js';

export type ClusterKind = 'etcd' | 'tandem';

export interface BenchMember {
  readonly name: string;
  /** gRPC endpoint `127.0.0.1:port` (plaintext, etcd v3 API). */
  readonly clientEndpoint: string;
  /**
   * Where the member serves tandem's Prometheus metrics (its admin endpoint, host:port); null
   * for etcd, whose /metrics has no event-loop figures.
   */
  readonly metricsEndpoint: string | null;
  readonly dataDir: string;
  readonly logFile: string;
  /** The launcher's process (src/cli/local-process.ts): kill, spawn, stop, tail. */
  readonly process: LocalProcess;
}

export interface BenchCluster {
  readonly kind: ClusterKind;
  /** For tables: `etcd 3.4.23`, `tandem 0.1.0 (ff313da)`. */
  readonly label: string;
  readonly members: readonly BenchMember[];
  readonly endpoints: readonly string[];
  readonly rootDir: string;
  /** The member that says it leads (null when none does, or members disagree). */
  leader(): Promise<BenchMember | null>;
  /** kill -9 one member; resolves once the process has exited. */
  kill(member: BenchMember): Promise<void>;
  /** Starts a killed or stopped member again: same command line, ports and data. */
  restart(member: BenchMember): Promise<void>;
  /**
   * Resolves once every member runs and reports healthy, one leader is agreed, every member has
   * caught up with the leader's log, and a put succeeds.
   */
  waitReady(timeoutMs: number): Promise<void>;
  /** Stops every member (SIGTERM, then SIGKILL) and removes the data. Idempotent. */
  stop(): Promise<void>;
}

export const STATUS_REQUEST_TIMEOUT_MS = 1000;
/** A restarted member counts as caught up within this many entries of the leader's commit. */
export const CATCH_UP_ENTRIES_MAX = 10;

/** GET (or POST `body`) JSON at `address` (host:port), bounded; null on any failure. */
export function fetchJson(address: string, path: string, body?: unknown): Promise<unknown> {
  const method = body === undefined ? 'GET' : 'POST';
  return adminRequest<unknown>(address, method, path, body, STATUS_REQUEST_TIMEOUT_MS).catch(
    () => null,
  );
}

/** How often a starting cluster is polled for readiness. */
export const HEALTH_POLL_MS = 100;

/**
 * Polls `readyOnce` until it says the cluster is ready; fails at once, with the member's log tail,
 * when a member process has died, and with every member's log tail on timeout.
 */
export async function waitUntilReady(
  kind: ClusterKind,
  members: readonly BenchMember[],
  readyOnce: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  await waitFor(
    `the ${kind} cluster to be ready`,
    timeoutMs,
    async () => {
      const dead = members.find((m) => !m.process.running);
      if (dead !== undefined) {
        throw new FatalWait(
          `${kind} member ${dead.name} exited (${dead.process.exitDescription()}); log tail:\n${dead.process.tail(15)}`,
        );
      }
      return (await readyOnce()) ? true : null;
    },
    {
      intervalMs: HEALTH_POLL_MS,
      detail: () =>
        `log tails:\n${members.map((m) => `${m.name}:\n${m.process.tail(5)}`).join('\n')}`,
    },
  );
}

/** Waits until a freshly started cluster is ready; stops it (and rethrows) when it never is. */
export async function readyOrStopped<C extends BenchCluster>(
  cluster: C,
  timeoutMs: number,
): Promise<C> {
  try {
    await cluster.waitReady(timeoutMs);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
