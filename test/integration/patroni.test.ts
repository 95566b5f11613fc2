/**
 * A REAL USER: Debian's Patroni (3.0.x) with two PostgreSQL instances uses a 3-member tandem
 * cluster as its DCS (`etcd3:`, which speaks etcd's JSON gateway on the client port). A primary
 * is elected and its leader key is in tandem; then a tandem member and the Patroni primary (its
 * Patroni and its postmaster) are killed with SIGKILL, and the replica takes the leader key once
 * the old one's lease expires on tandem. PostgreSQL refuses to run as root, so Patroni runs as
 * the `postgres` user (setpriv, which execs: the PID we hold is Patroni's) in a temp dir it owns.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chownSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { freePorts, waitFor } from '../../src/cli/local-net.js';
import { ctlOk, ETCDCTL_MISSING, killCtls } from './clients.js';
import { startCluster } from './cluster.js';

const PATRONI = '/usr/bin/patroni';
const SETPRIV = '/usr/bin/setpriv';
const PG_ROOT = '/usr/lib/postgresql';
/** Patroni's leader key lease (bootstrap.dcs.ttl); its minimum is 20 s. */
const DCS_TTL_S = 20;
const LEADER_WAIT_MS = 120_000;
const FAILOVER_WAIT_MS = (DCS_TTL_S + 40) * 1_000;
const SCOPE = 'tandemtest';

/** The newest installed PostgreSQL's bin directory, or null. */
function postgresBin(): string | null {
  if (!existsSync(PG_ROOT)) return null;
  const versions = readdirSync(PG_ROOT)
    .filter((v) => existsSync(join(PG_ROOT, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? null : join(PG_ROOT, versions[0], 'bin');
}

/** uid and gid of `postgres` when we are root (PostgreSQL refuses root), else our own. */
function runAs(): { uid: number; gid: number } | null {
  const me = userInfo();
  if (me.uid !== 0) return { uid: me.uid, gid: me.gid };
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (line === undefined) return null;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

const PG_BIN = postgresBin();
const USER = runAs();
const SKIP: string | false =
  (!existsSync(PATRONI) && `needs ${PATRONI} (Debian patroni: apt-get install -y patroni)`) ||
  (PG_BIN === null && `needs PostgreSQL (Debian postgresql: apt-get install -y postgresql)`) ||
  (USER === null && 'needs a postgres user to run PostgreSQL as (Debian postgresql creates it)') ||
  (!existsSync(SETPRIV) && `needs ${SETPRIV} (Debian util-linux)`) ||
  ETCDCTL_MISSING;

interface PatroniNode {
  readonly name: string;
  readonly restPort: number;
  readonly dataDir: string;
  child: ChildProcess | null;
}

interface ClusterView {
  readonly members: readonly { name: string; role: string; state: string }[];
}

async function clusterView(node: PatroniNode): Promise<ClusterView | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${node.restPort}/cluster`, {
      signal: AbortSignal.timeout(2_000),
    });
    return res.ok ? ((await res.json()) as ClusterView) : null;
  } catch {
    return null; // not up yet, or killed
  }
}

describe('Patroni on tandem (etcd3 DCS)', { skip: SKIP, timeout: 400_000 }, () => {
  let tandem: LocalCluster;
  let dir: string;
  const nodes: PatroniNode[] = [];

  function writeConfig(node: PatroniNode, pgPort: number, hosts: string): string {
    const file = join(dir, `${node.name}.yml`);
    const config = {
      scope: SCOPE,
      name: node.name,
      log: { level: 'INFO' },
      restapi: {
        listen: `127.0.0.1:${node.restPort}`,
        connect_address: `127.0.0.1:${node.restPort}`,
      },
      etcd3: { hosts },
      bootstrap: {
        dcs: {
          ttl: DCS_TTL_S,
          loop_wait: 2,
          retry_timeout: 5,
          maximum_lag_on_failover: 1_048_576,
          postgresql: { use_pg_rewind: false },
        },
        initdb: [{ encoding: 'UTF8' }],
        pg_hba: [
          'host replication replicator 127.0.0.1/32 trust',
          'host all all 127.0.0.1/32 trust',
          'local all all trust',
        ],
      },
      postgresql: {
        listen: `127.0.0.1:${pgPort}`,
        connect_address: `127.0.0.1:${pgPort}`,
        data_dir: node.dataDir,
        bin_dir: PG_BIN,
        pgpass: join(dir, `${node.name}.pgpass`),
        authentication: {
          replication: { username: 'replicator', password: 'rep' },
          superuser: { username: 'postgres', password: 'pg' },
        },
        parameters: { unix_socket_directories: dir },
      },
    };
    writeFileSync(file, stringify(config));
    chownSync(file, USER!.uid, USER!.gid);
    return file;
  }

  function startPatroni(node: PatroniNode, config: string): void {
    const log = createWriteStream(join(dir, `${node.name}.log`), { flags: 'a' });
    const child = spawn(
      SETPRIV,
      [`--reuid=${USER!.uid}`, `--regid=${USER!.gid}`, '--clear-groups', PATRONI, config],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: dir } },
    );
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    node.child = child;
  }

  /** SIGKILLs a node's Patroni (the PID we started) and the postmaster it started. */
  function killNode(node: PatroniNode): void {
    if (node.child?.pid !== undefined && node.child.exitCode === null) node.child.kill('SIGKILL');
    const pidFile = join(node.dataDir, 'postmaster.pid');
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    try {
      if (Number.isInteger(pid) && pid > 1) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  const tail = (node: PatroniNode) => {
    try {
      return readFileSync(join(dir, `${node.name}.log`), 'utf8').slice(-3_000);
    } catch {
      return '';
    }
  };

  before(async () => {
    tandem = await startCluster({ label: 'patroni' });
    dir = mkdtempSync(join(tmpdir(), 'tandem-it-patroni-'));
    chownSync(dir, USER!.uid, USER!.gid);
    const [rest1, rest2, pg1, pg2] = await freePorts(4);
    const hosts = tandem.endpoints().join(',');
    for (const [name, restPort, pgPort] of [
      ['pg1', rest1!, pg1!],
      ['pg2', rest2!, pg2!],
    ] as const) {
      const node: PatroniNode = { name, restPort, dataDir: join(dir, `${name}-data`), child: null };
      nodes.push(node);
      startPatroni(node, writeConfig(node, pgPort, hosts));
    }
  });

  after(async () => {
    for (const node of nodes) killNode(node);
    killCtls();
    await tandem?.destroy({ kill: true });
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** Waits until `want` holds of the cluster as the surviving node's REST API reports it. */
  function waitView(
    what: string,
    from: PatroniNode,
    timeoutMs: number,
    want: (v: ClusterView) => boolean,
  ): Promise<ClusterView> {
    return waitFor(
      what,
      timeoutMs,
      async () => {
        for (const n of nodes) {
          if (n.child !== null && n.child.exitCode !== null && n === from) {
            throw new Error(`${n.name}'s Patroni exited:\n${tail(n)}`);
          }
        }
        const v = await clusterView(from);
        return v !== null && want(v) ? v : null;
      },
      { intervalMs: 500 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- pg1\n${tail(nodes[0]!)}\n--- pg2\n${tail(nodes[1]!)}`);
    });
  }

  const leaderKey = async () =>
    (
      await ctlOk(tandem.endpoints(), ['get', `/service/${SCOPE}/leader`, '--print-value-only'])
    ).trim();

  test('a primary is elected with its leader key in tandem, and a replica streams from it', {
    timeout: LEADER_WAIT_MS + 30_000,
  }, async () => {
    const view = await waitView(
      'a leader and a running replica',
      nodes[0]!,
      LEADER_WAIT_MS,
      (v) =>
        v.members.some((m) => m.role === 'leader' && m.state === 'running') &&
        v.members.some((m) => m.role === 'replica' && m.state === 'running'),
    );
    const leader = view.members.find((m) => m.role === 'leader')!.name;
    assert.equal(await leaderKey(), leader);
    // Patroni's other keys are there too: its config, its members, the initialize key.
    const keys = await ctlOk(tandem.endpoints(), [
      'get',
      '--prefix',
      `/service/${SCOPE}/`,
      '--keys-only',
    ]);
    for (const k of ['config', 'initialize', 'leader', 'members/pg1', 'members/pg2']) {
      assert.match(keys, new RegExp(`^/service/${SCOPE}/${k}$`, 'm'));
    }
  });

  test('kill -9 a tandem member and the Patroni primary: the replica takes the leader key', {
    timeout: FAILOVER_WAIT_MS + 30_000,
  }, async () => {
    const before = await leaderKey();
    const primary = nodes.find((n) => n.name === before)!;
    const replica = nodes.find((n) => n !== primary)!;
    await tandem.members[2]!.kill();
    killNode(primary);
    const view = await waitView('the replica to lead', replica, FAILOVER_WAIT_MS, (v) =>
      v.members.some(
        (m) => m.name === replica.name && m.role === 'leader' && m.state === 'running',
      ),
    );
    assert.ok(view.members.some((m) => m.name === replica.name && m.role === 'leader'));
    assert.equal(await leaderKey(), replica.name);
  });
});
