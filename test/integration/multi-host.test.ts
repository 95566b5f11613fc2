/**
 * Members on separate hosts (issue 15, "Beyond one machine"): each member in its own network
 * namespace with its own address (src/chaos/netns.ts: a bridge, veth pairs), started with
 * `tandem start --config` from a config file written as a user writes one per machine: its own
 * address for every listener (the same ports on every host), the others' addresses as peers,
 * a data directory beside it. Root, iproute2 and nftables; skipped otherwise, saying which.
 *
 * Checked: a leader is elected over the bridge; each member publishes its own host's client
 * URL; a put through one member is read, linearizably, through another, and through etcdctl on
 * a third; each member's peer traffic counters name both other members.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { KernelNet, kernelNetUnavailable } from '../../src/chaos/netns.js';
import { memberEnv, REPO_DIR, tandemArgv } from '../../src/cli/local-cluster.js';
import { waitFor } from '../../src/cli/local-net.js';
import { LocalProcess } from '../../src/cli/local-process.js';
import { call, ctl, ETCDCTL_MISSING, grpcClients } from './clients.js';
import { scrapeAdmin, valueOr0 } from './scrape.js';

const HOSTS = 3;
/** Every host uses etcd's ports: they are separate machines. */
const PORTS = { client: 2379, peer: 2380, admin: 2381 } as const;
const START_TIMEOUT_MS = 90_000;
const STATUS_TIMEOUT_MS = 2_000;

interface HostStatus {
  readonly name: string;
  readonly memberId: string;
  readonly leader: string;
  readonly members: readonly { name: string; clientUrls: string[]; peerUrls: string[] }[];
}

async function statusOf(address: string): Promise<HostStatus | null> {
  try {
    const res = await fetch(`http://${address}:${PORTS.admin}/status`, {
      signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
    });
    return res.ok ? ((await res.json()) as HostStatus) : null;
  } catch {
    return null;
  }
}

test('three members on three hosts (network namespaces), each from its own config file', {
  timeout: 180_000,
}, async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root (network namespaces; CI runs as root)');
    return;
  }
  const why = await kernelNetUnavailable();
  if (why !== null) {
    t.skip(why); // names the missing Debian package (iproute2, nftables)
    return;
  }
  const net = await KernelNet.create({ members: HOSTS });
  const dir = mkdtempSync(join(tmpdir(), 'tandem-it-multi-host-'));
  const members: LocalProcess[] = [];
  try {
    const secret = randomBytes(32).toString('hex');
    const hosts = Array.from({ length: HOSTS }, (_, i) => ({
      name: `host${i + 1}`,
      address: net.address(i),
    }));
    for (const [i, host] of hosts.entries()) {
      // What a user writes on each machine: its own addresses, the others as peers.
      const hostDir = join(dir, host.name);
      mkdirSync(hostDir);
      const config = {
        name: host.name,
        dataDir: './data',
        listen: {
          client: `${host.address}:${PORTS.client}`,
          peer: `${host.address}:${PORTS.peer}`,
          admin: `${host.address}:${PORTS.admin}`,
        },
        zone: `zone-${i + 1}`,
        peers: hosts
          .filter((h) => h !== host)
          .map((h) => ({ name: h.name, addresses: [`${h.address}:${PORTS.peer}`] })),
        cluster: {
          state: 'new',
          token: `multi-host-${process.pid}`,
          secretFile: './cluster-secret',
        },
        raft: { heartbeatMs: 100, electionMs: 1000 },
      };
      writeFileSync(join(hostDir, 'cluster-secret'), secret, { mode: 0o600 });
      const file = join(hostDir, 'tandem.yaml');
      writeFileSync(file, stringify(config));
      const member = new LocalProcess({
        label: host.name,
        argv: [...tandemArgv('source'), 'start', '--config', file],
        env: memberEnv(process.env),
        cwd: REPO_DIR,
        logFile: join(hostDir, 'tandem.log'),
        wrap: (argv) => net.wrap(i, argv),
      });
      members.push(member);
      member.spawn();
    }
    const describeLogs = () => members.map((m) => `--- ${m.options.label}\n${m.tail()}`).join('\n');

    // One leader, agreed over the bridge, and every member listing the other hosts' addresses.
    const leaderId = await waitFor('a leader every host agrees on', START_TIMEOUT_MS, async () => {
      const statuses = await Promise.all(hosts.map((h) => statusOf(h.address)));
      const leaders = new Set(statuses.map((s) => s?.leader ?? null));
      if (leaders.size !== 1 || leaders.has(null) || leaders.has('0')) return null;
      if (statuses.some((s) => s!.members.some((m) => m.clientUrls.length === 0))) return null;
      return [...leaders][0]!;
    }).catch((error: Error) => {
      throw new Error(`${error.message}\n${describeLogs()}`);
    });
    const status = (await statusOf(hosts[0]!.address))!;
    assert.ok(leaderId.length > 0);
    for (const h of hosts) {
      const m = status.members.find((x) => x.name === h.name);
      assert.deepEqual(m?.clientUrls, [`http://${h.address}:${PORTS.client}`], h.name);
      assert.deepEqual(m?.peerUrls, [`http://${h.address}:${PORTS.peer}`], h.name);
    }

    // Written through host1, read through host2 (linearizable) and through etcdctl on host3.
    const [writer, reader, third] = hosts as [
      (typeof hosts)[0],
      (typeof hosts)[0],
      (typeof hosts)[0],
    ];
    const w = grpcClients(`${writer.address}:${PORTS.client}`);
    const r = grpcClients(`${reader.address}:${PORTS.client}`);
    try {
      await call(w.kv, 'Put', { key: Buffer.from('where'), value: Buffer.from('everywhere') });
      const got = await call(r.kv, 'Range', { key: Buffer.from('where') });
      const kvs = got.kvs as { value: Buffer }[];
      assert.equal(kvs.length, 1);
      assert.equal(Buffer.from(kvs[0]!.value).toString(), 'everywhere');
    } finally {
      w.close();
      r.close();
    }
    if (ETCDCTL_MISSING === false) {
      const res = await ctl(
        [`${third.address}:${PORTS.client}`],
        ['get', 'where', '--print-value-only'],
      );
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout.trim(), 'everywhere');
    }

    // Each host's peer traffic names both other hosts' members.
    for (const h of hosts) {
      const f = await scrapeAdmin(`${h.address}:${PORTS.admin}`);
      const self = (await statusOf(h.address))!.memberId;
      const others = (await statusOf(h.address))!.members.filter((m) => m.name !== h.name);
      assert.equal(others.length, HOSTS - 1);
      const to = f.get('etcd_network_peer_sent_bytes_total')!.samples.map((s) => s.labels.To);
      assert.equal(new Set(to).size, HOSTS - 1, `${h.name} sent to ${to}`);
      assert.ok(!to.includes(self));
      for (const id of to) {
        assert.ok(valueOr0(f, 'etcd_network_peer_sent_bytes_total', { To: id! }) > 0);
      }
    }
  } finally {
    await Promise.allSettled(members.map((m) => m.kill()));
    await net.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
