/**
 * TEST HARNESS: `tandem gateway` as a real process (from source) in front of a LocalCluster,
 * with its /status read over HTTP.
 */
import { join } from 'node:path';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { memberEnv, REPO_DIR, tandemArgv } from '../../src/cli/local-cluster.js';
import { freePort, waitFor } from '../../src/cli/local-net.js';
import { LocalProcess } from '../../src/cli/local-process.js';

export const GATEWAY_START_TIMEOUT_MS = 30_000;

export interface GatewayProcess {
  readonly process: LocalProcess;
  readonly endpoint: string;
  status(): Promise<GatewayStatus>;
  stop(): Promise<void>;
}

export interface GatewayStatus {
  readonly leaderId: string | null;
  readonly term: number;
  readonly members: readonly {
    id: string;
    name: string;
    health: string;
    ewmaMs: number | null;
    picks: number;
    ejections: number;
    role: string;
    zone: string;
  }[];
  readonly decisions: Record<string, number>;
  readonly hedges: { sent: number; won: number; refused: number };
  readonly ejections: number;
  readonly requests: Record<string, number>;
  readonly watches: {
    clientWatches: number;
    upstreamWatches: number;
    shared: number;
    resumes: number;
  };
  readonly leases: { tracked: number; clientKeepAlives: number; upstreamKeepAlives: number };
}

export async function startGatewayProcess(
  cluster: LocalCluster,
  options: { zone?: string; endpoints?: readonly string[] } = {},
): Promise<GatewayProcess> {
  const port = await freePort();
  const endpoint = `127.0.0.1:${port}`;
  const args = [
    'gateway',
    '--endpoints',
    (options.endpoints ?? cluster.endpoints()).join(','),
    '--listen',
    endpoint,
    ...(options.zone === undefined ? [] : ['--zone', options.zone]),
  ];
  const proc = new LocalProcess({
    label: 'gateway',
    argv: [...tandemArgv('source'), ...args],
    env: { ...memberEnv(process.env), TANDEM_LOG_LEVEL: 'warn' },
    cwd: REPO_DIR,
    logFile: join(cluster.dir, 'gateway.log'),
  });
  proc.spawn();
  const status = async (): Promise<GatewayStatus> => {
    const res = await fetch(`http://${endpoint}/status`, { signal: AbortSignal.timeout(2_000) });
    return (await res.json()) as GatewayStatus;
  };
  await waitFor('the gateway to answer /status', GATEWAY_START_TIMEOUT_MS, async () => {
    if (proc.state === 'down') throw new Error(`gateway exited: ${proc.exitDescription()}`);
    try {
      const s = await status();
      return s.leaderId === null ? null : s;
    } catch {
      return null;
    }
  });
  return {
    process: proc,
    endpoint,
    status,
    stop: async () => {
      if (proc.state !== 'down') await proc.kill();
    },
  };
}
