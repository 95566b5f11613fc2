/**
 * TEST HARNESS: a real etcd cluster (Debian etcd-server's /usr/bin/etcd) on loopback, in a temp
 * directory, for differential tests against tandem. Members are named n1, n2, ... like the
 * launcher's, with free ports picked the same way; `destroy` SIGKILLs them and removes the dir.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts, waitFor } from '../../src/cli/local-net.js';
import { ctl } from './clients.js';

export const ETCD = '/usr/bin/etcd';
const ETCD_START_TIMEOUT_MS = 30_000;
const OUTPUT_TAIL_BYTES = 4_096;

/** Why tests that need a real etcd cannot run here, or false (they skip naming the package). */
export const ETCD_MISSING: string | false = existsSync(ETCD)
  ? false
  : `needs ${ETCD} (Debian etcd-server: apt-get install -y etcd-server)`;

export interface EtcdMember {
  readonly name: string;
  /** host:port */
  readonly client: string;
  readonly peer: string;
}

export interface EtcdCluster {
  readonly dir: string;
  readonly members: readonly EtcdMember[];
  endpoints(): string[];
  destroy(): Promise<void>;
}

export async function startEtcdCluster(size: number, label: string): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), `tandem-it-etcd-${label}-`));
  const ports = await freePorts(2 * size);
  const members = Array.from({ length: size }, (_, i) => ({
    name: `n${i + 1}`,
    client: `127.0.0.1:${ports[2 * i]}`,
    peer: `127.0.0.1:${ports[2 * i + 1]}`,
  }));
  const initial = members.map((m) => `${m.name}=http://${m.peer}`).join(',');
  const children: ChildProcess[] = [];
  const tails = new Map<string, string>();
  for (const m of members) {
    const child = spawn(
      ETCD,
      [
        `--name=${m.name}`,
        `--data-dir=${join(dir, m.name)}`,
        `--listen-client-urls=http://${m.client}`,
        `--advertise-client-urls=http://${m.client}`,
        `--listen-peer-urls=http://${m.peer}`,
        `--initial-advertise-peer-urls=http://${m.peer}`,
        `--initial-cluster=${initial}`,
        '--initial-cluster-state=new',
        `--initial-cluster-token=${label}`,
        '--heartbeat-interval=100',
        '--election-timeout=1000',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.on('data', (d: Buffer) => {
      tails.set(m.name, ((tails.get(m.name) ?? '') + d.toString()).slice(-OUTPUT_TAIL_BYTES));
    });
    children.push(child);
  }
  const cluster: EtcdCluster = {
    dir,
    members,
    endpoints: () => members.map((m) => m.client),
    async destroy() {
      for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill('SIGKILL');
      await Promise.all(
        children.map((c) =>
          c.exitCode !== null || c.signalCode !== null
            ? undefined
            : new Promise((resolve) => c.once('exit', resolve)),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor('etcd to be healthy', ETCD_START_TIMEOUT_MS, async () => {
      const exited = children.findIndex((c) => c.exitCode !== null);
      if (exited >= 0) {
        throw new Error(`etcd ${members[exited]!.name} exited:\n${tails.get(`n${exited + 1}`)}`);
      }
      return (await ctl(cluster.endpoints(), ['endpoint', 'health'])).code === 0 ? true : null;
    });
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}
