/**
 * TEST HARNESS: one real etcd member (Debian etcd-server, /usr/bin/etcd) on free loopback ports,
 * on a fresh data directory or one `etcdctl snapshot restore` made, stopped by PID. And the
 * etcdctl views the snapshot tests compare between systems.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts, waitFor } from '../../src/cli/local-net.js';
import { LocalProcess } from '../../src/cli/local-process.js';
import { ctl, ctlOk } from './clients.js';

export const ETCD = '/usr/bin/etcd';
export const ETCD_MISSING: string | false = existsSync(ETCD)
  ? false
  : `needs ${ETCD} (Debian etcd-server: apt-get install -y etcd-server)`;

const ETCD_START_TIMEOUT_MS = 30_000;

export interface EtcdMember {
  readonly endpoint: string;
  readonly dir: string;
  stop(): Promise<void>;
}

/** Ports and names for one etcd member: restore and start must agree on them. */
export interface EtcdPlan {
  readonly name: string;
  readonly clientPort: number;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly dir: string;
}

export async function planEtcd(label: string): Promise<EtcdPlan> {
  const [clientPort, peerPort] = await freePorts(2);
  const dir = mkdtempSync(join(tmpdir(), `tandem-it-etcd-${label}-`));
  return {
    name: 'e1',
    clientPort: clientPort!,
    peerUrl: `http://127.0.0.1:${peerPort}`,
    dataDir: join(dir, 'data'),
    dir,
  };
}

/** `etcdctl snapshot restore` of `file` into the plan's data directory. */
export async function etcdctlRestore(plan: EtcdPlan, file: string): Promise<string> {
  return ctlOk(
    [],
    [
      'snapshot',
      'restore',
      file,
      `--name=${plan.name}`,
      `--data-dir=${plan.dataDir}`,
      `--initial-cluster=${plan.name}=${plan.peerUrl}`,
      `--initial-advertise-peer-urls=${plan.peerUrl}`,
      '--initial-cluster-token=restored',
    ],
  );
}

/** Starts etcd on the plan (its data directory new or restored); resolves once it is healthy. */
export async function startEtcd(plan: EtcdPlan): Promise<EtcdMember> {
  const client = `http://127.0.0.1:${plan.clientPort}`;
  const process = new LocalProcess({
    label: `etcd ${plan.name}`,
    argv: [
      ETCD,
      `--name=${plan.name}`,
      `--data-dir=${plan.dataDir}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${plan.peerUrl}`,
      `--initial-advertise-peer-urls=${plan.peerUrl}`,
      `--initial-cluster=${plan.name}=${plan.peerUrl}`,
      '--initial-cluster-token=restored',
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
    ],
    logFile: join(plan.dir, 'etcd.log'),
  });
  process.spawn();
  const endpoint = `127.0.0.1:${plan.clientPort}`;
  const stop = async (): Promise<void> => {
    await process.stop();
    rmSync(plan.dir, { recursive: true, force: true });
  };
  try {
    await waitFor('etcd healthy', ETCD_START_TIMEOUT_MS, async () => {
      if (!process.running) throw new Error(`etcd exited: ${process.tail()}`);
      const r = await ctl([endpoint], ['endpoint', 'health']);
      return r.code === 0 ? true : null;
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { endpoint, dir: plan.dir, stop };
}

/** A key as `etcdctl get -w json` shows it, lease reduced to whether there is one. */
export interface KvView {
  readonly key: string;
  readonly value: string;
  readonly create: number;
  readonly mod: number;
  readonly version: number;
  readonly lease: string;
}

/** Every live key (at `rev`, or now) and the revision of the read. */
export async function dumpKv(
  endpoints: readonly string[],
  rev = 0,
): Promise<{ revision: number; kvs: KvView[] }> {
  const out = JSON.parse(
    await ctlOk(endpoints, [
      'get',
      '',
      '--from-key',
      '-w',
      'json',
      ...(rev > 0 ? [`--rev=${rev}`] : []),
    ]),
  ) as {
    header: { revision: number };
    kvs?: {
      key: string;
      value?: string;
      create_revision: number;
      mod_revision: number;
      version: number;
      lease?: number;
    }[];
  };
  const text = (b64: string | undefined) => Buffer.from(b64 ?? '', 'base64').toString();
  return {
    revision: out.header.revision,
    kvs: (out.kvs ?? []).map((kv) => ({
      key: text(kv.key),
      value: text(kv.value),
      create: kv.create_revision,
      mod: kv.mod_revision,
      version: kv.version,
      lease: kv.lease === undefined ? '' : BigInt(kv.lease).toString(16),
    })),
  };
}

/**
 * The same writes on any etcd-speaking endpoint: puts, an overwrite, a delete, a leased key, a
 * physical compaction, then more writes. Returns the lease id (hex) and the compact revision.
 */
export async function writeWorkload(
  endpoints: readonly string[],
): Promise<{ leaseId: string; compactRevision: number }> {
  await ctlOk(endpoints, ['put', 'a', 'one']);
  await ctlOk(endpoints, ['put', 'b', 'two']);
  await ctlOk(endpoints, ['put', 'a', 'three']);
  await ctlOk(endpoints, ['del', 'b']);
  await ctlOk(endpoints, ['put', 'dir/x', 'x'.repeat(5000)]);
  const grant = await ctlOk(endpoints, ['lease', 'grant', '600']);
  const leaseId = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
  if (leaseId === undefined) throw new Error(`lease grant said ${grant}`);
  await ctlOk(endpoints, ['put', 'leased', 'l', `--lease=${leaseId}`]);
  await ctlOk(endpoints, ['put', 'c', 'four']);
  const compactRevision = (await dumpKv(endpoints)).revision - 1;
  await ctlOk(endpoints, ['compaction', '--physical', String(compactRevision)]);
  await ctlOk(endpoints, ['put', 'a', 'five']);
  await ctlOk(endpoints, ['del', 'c']);
  // Transactions of many puts: one main revision, many sub revisions; enough entries for
  // branch pages in the key bucket.
  for (let t = 0; t < 3; t++) {
    const puts = Array.from({ length: 60 }, (_, i) => `put many/${t}/${i} v${t}.${i}\n`).join('');
    await ctlOk(endpoints, ['txn'], `\n${puts}\n\n`);
  }
  return { leaseId, compactRevision };
}

/** What `etcdctl snapshot status -w json` says of a file. */
export async function snapshotStatus(
  file: string,
): Promise<{ hash: number; revision: number; totalKey: number; totalSize: number }> {
  return JSON.parse(await ctlOk([], ['snapshot', 'status', file, '-w', 'json']));
}
