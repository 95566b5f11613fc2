/**
 * TEST HARNESS: one real etcd (Debian etcd-server, /usr/bin/etcd) on loopback ports in a temp
 * directory, for differential tests that run the same client script against etcd and tandem.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../../src/cli/local-net.js';
import { ctl } from './clients.js';

export const ETCD = '/usr/bin/etcd';
export const ETCD_MISSING: string | false = existsSync(ETCD)
  ? false
  : `needs ${ETCD} (Debian etcd-server: apt-get install -y etcd-server)`;
/** How long etcd may take to answer its first request. */
const ETCD_READY_MS = 20_000;

export interface RealEtcd {
  /** host:port of its client URL. */
  readonly endpoint: string;
  stop(): Promise<void>;
}

export async function startRealEtcd(label: string): Promise<RealEtcd> {
  const dir = mkdtempSync(join(tmpdir(), `tandem-etcd-${label}-`));
  const [clientPort, peerPort] = (await freePorts(2)) as [number, number];
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child: ChildProcess = spawn(
    ETCD,
    [
      '--name=e1',
      `--data-dir=${join(dir, 'data')}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=e1=${peer}`,
      '--log-level=error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-8192);
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.pid !== undefined) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const endpoint = `127.0.0.1:${clientPort}`;
  const deadline = Date.now() + ETCD_READY_MS;
  for (;;) {
    const r = await ctl([endpoint], ['endpoint', 'health']);
    if (r.code === 0) return { endpoint, stop };
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`etcd did not start: ${r.stderr} ${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
