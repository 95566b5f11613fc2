/**
 * A cold standby end to end, on real processes (issue 5): 3 voters (n1..n3) and a cold standby
 * (n4: registered, outside the Raft configuration, holding nothing); replaceAfter is 2 s.
 *
 * 1. Standbys serve no client traffic (DESIGN.md "Roles"): the cold standby refuses KV, Watch
 *    and Lease RPCs with UNAVAILABLE and a message naming the problem (etcdctl put shows it),
 *    while etcdctl endpoint status and member list work against it.
 * 2. kill -9 a follower voter: within replaceAfter + catch-up `etcdctl member list` shows n4 as a
 *    voter, the cluster keeps accepting writes, and n4 (now serving) holds every acknowledged
 *    write (serializable reads there).
 * 3. The killed member, restarted, rejoins as a (hot) standby and refuses client traffic too.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  credentials,
  status as GrpcStatus,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadEtcdProto } from '../../src/api/proto.js';
import { FORWARDED_BY_KEY } from '../../src/api/standby-forward.js';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { call, ctlOk, ETCDCTL_MISSING, grpcClients, killCtls } from './clients.js';
import { startCluster } from './cluster.js';

const REPLACE_AFTER_MS = 2_000;
/** Unreachable after 2 s, replaced after 2 s more, staged, caught up, promoted, on 2 cores. */
const REPLACE_SLACK_MS = 15_000;
const VOTER_NAMES = ['n1', 'n2', 'n3'];
const WRITE_GAP_MS_MAX = 3_000;

interface RegistryRow {
  name: string;
  role: string;
  placement: string;
  standbyMode: string;
}

/** A refusal as the API sends it: UNAVAILABLE, naming the member and its mode. */
function isStandbyRefusal(name: string, mode: string) {
  return (error: unknown): boolean => {
    const e = error as ServiceError;
    assert.equal(e.code, GrpcStatus.UNAVAILABLE, `code ${e.code}: ${e.details}`);
    assert.match(
      e.details,
      new RegExp(`member ${name} is a ${mode} standby and serves no client traffic`),
    );
    return true;
  };
}

/**
 * Opens a Watch stream on `endpoint`; resolves with the member id in the header of its first
 * answer (the created response), or with the status that ends it (bounded).
 */
function watchOutcome(
  endpoint: string,
  metadata: Readonly<Record<string, string>> = {},
  timeoutMs = 5_000,
): Promise<ServiceError | { answeredBy: bigint } | 'silent'> {
  const pkg = loadPackageDefinition(loadEtcdProto()) as unknown as {
    etcdserverpb: Record<string, ServiceClientConstructor>;
  };
  const client = new pkg.etcdserverpb.Watch!(endpoint, credentials.createInsecure());
  const md = new Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  const stream = (
    client as unknown as { Watch(md: Metadata): NodeJS.EventEmitter & { write(r: object): void } }
  ).Watch(md);
  return new Promise((resolve) => {
    let settled = false;
    const done = (outcome: ServiceError | { answeredBy: bigint } | 'silent'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      (stream as unknown as { cancel(): void }).cancel();
      client.close();
      resolve(outcome);
    };
    // A created watch answers at once; a refused stream ends with an error status.
    const timer = setTimeout(() => done('silent'), timeoutMs);
    stream.on('data', (r: { header: { memberId: string } }) =>
      done({ answeredBy: BigInt(r.header.memberId) }),
    );
    stream.on('error', (error: ServiceError) => done(error));
    stream.write({ createRequest: { key: Buffer.from('cold/w') } });
  });
}

describe('cold standby: promoted end to end; standbys serve no client traffic', {
  skip: ETCDCTL_MISSING,
  timeout: 180_000,
}, () => {
  let c: LocalCluster;
  const conns = new Map<string, ReturnType<typeof grpcClients>>();
  const acked = new Map<string, string>();

  before(async () => {
    c = await startCluster({
      label: 'cold-standby',
      size: 4,
      roles: {
        n1: { role: 'voter', zone: 'zone-a' },
        n2: { role: 'voter', zone: 'zone-a' },
        n3: { role: 'voter', zone: 'zone-a' },
        n4: { role: 'standby', standbyMode: 'cold', zone: 'zone-a' },
      },
      extraConfig: { redundancy: { replaceAfter: `${REPLACE_AFTER_MS}ms` } },
    });
    for (const m of c.members) conns.set(m.name, grpcClients(m.spec.client));
  });

  after(async () => {
    killCtls();
    for (const conn of conns.values()) conn.close();
    await c?.destroy({ kill: true });
  });

  const kv = (m: LocalMember) => conns.get(m.name)!.kv;
  const lease = (m: LocalMember) => conns.get(m.name)!.lease;

  async function registry(m: LocalMember): Promise<RegistryRow[]> {
    const s = (await m.status()) as unknown as { registry: RegistryRow[] };
    return s.registry;
  }

  async function memberList(endpoints: string[]) {
    const out = JSON.parse(await ctlOk(endpoints, ['member', 'list', '-w', 'json'])) as {
      members: { name: string; isLearner?: boolean }[];
    };
    return out.members;
  }

  /** Every client RPC kind a standby must refuse, against `m`. */
  /**
   * A standby answers no call from its own data. A unary call is forwarded to a member that
   * serves clients (the answer's header names that member); one already forwarded
   * (`tandem-forwarded-by`) is refused; a watch is refused.
   */
  async function assertServesNone(m: LocalMember, mode: string): Promise<void> {
    const refused = isStandbyRefusal(m.name, mode);
    const self = BigInt(`0x${(await m.status()).memberId}`);
    const key = Buffer.from('cold/forwarded');
    const calls: [ReturnType<typeof kv>, string, object][] = [
      [kv(m), 'Put', { key, value: Buffer.from('x') }],
      [kv(m), 'Range', { key }],
      [kv(m), 'Range', { key, serializable: true }],
      [kv(m), 'Txn', { success: [] }],
      [kv(m), 'DeleteRange', { key }],
      [lease(m), 'LeaseGrant', { TTL: 10 }],
      [lease(m), 'LeaseLeases', {}],
    ];
    for (const [client, method, req] of calls) {
      const answer = await call(client, method, req, 3_000);
      const by = BigInt(String((answer.header as { memberId: string }).memberId));
      assert.notEqual(by, self, `${method} was answered by the standby itself`);
      const forwarded = { [FORWARDED_BY_KEY]: 'test' };
      await assert.rejects(call(client, method, req, 3_000, forwarded), refused);
    }
    // Healthy as a standby (it knows a leader), so a liveness probe does not restart it.
    const health = await (await fetch(`http://${m.spec.client}/health`)).json();
    assert.deepEqual(health, { health: 'true', reason: '' });
    // A watch is relayed whole to a member that serves; one already forwarded is refused.
    const watched = await watchOutcome(m.spec.client);
    assert.ok(typeof watched === 'object' && 'answeredBy' in watched, `watch: ${watched}`);
    assert.notEqual(watched.answeredBy, self, 'the watch was answered by the standby itself');
    refused(await watchOutcome(m.spec.client, { [FORWARDED_BY_KEY]: 'test' }));
  }

  test('the cold standby is registered outside the configuration and serves no client traffic', () =>
    c.guard('cold standby roles', async () => {
      const leader = await c.leader();
      const n4 = c.member('n4');
      const rows = await registry(leader);
      const row = rows.find((r) => r.name === 'n4');
      assert.equal(row?.role, 'standby');
      assert.equal(row?.standbyMode, 'cold');
      assert.equal(row?.placement, 'none', 'a cold standby is outside the Raft configuration');
      const voters = c.members.filter((m) => VOTER_NAMES.includes(m.name));
      const listed = await memberList(c.endpoints(voters));
      assert.deepEqual(listed.map((m) => m.name).sort(), VOTER_NAMES);

      await assertServesNone(n4, 'cold');
      // etcdctl given only the standby still works: its calls are forwarded.
      assert.equal(await ctlOk([n4.spec.client], ['put', 'cold/etcdctl', 'v']), 'OK\n');
      assert.equal(
        await ctlOk(c.endpoints(voters), ['get', 'cold/etcdctl', '--print-value-only']),
        'v\n',
      );

      // What operators need still answers: endpoint status and member list.
      const status = JSON.parse(
        await ctlOk([n4.spec.client], ['endpoint', 'status', '-w', 'json']),
      ) as { Status: { header: { member_id: number } } }[];
      assert.equal(status.length, 1);
      const fromN4 = await memberList([n4.spec.client]);
      assert.ok(
        fromN4.some((m) => m.name === 'n1'),
        'member list answered by the standby',
      );
    }));

  test('kill -9 a voter: the cold standby becomes a voter holding every acknowledged write', () =>
    c.guard('cold replacement', async () => {
      const leader = await c.leader();
      const victim = c.members.find((m) => m !== leader && VOTER_NAMES.includes(m.name))!;
      const survivors = c.members.filter((m) => m !== victim && VOTER_NAMES.includes(m.name));
      let stop = false;
      let promoted = false;
      let ackedAfterPromotion = 0;
      let lastOkMs = Date.now();
      let gapMsMax = 0;
      const writer = (async () => {
        for (let i = 0; !stop && i < 100_000; i++) {
          const m = survivors[i % survivors.length]!;
          const key = `cold/${i}`;
          try {
            await call(
              kv(m),
              'Put',
              { key: Buffer.from(key), value: Buffer.from(String(i)) },
              2_000,
            );
            acked.set(key, String(i));
            if (promoted) ackedAfterPromotion++;
            const now = Date.now();
            gapMsMax = Math.max(gapMsMax, now - lastOkMs);
            lastOkMs = now;
          } catch {
            // not acknowledged: the check is on acknowledged writes
          }
          await sleep(20);
        }
      })();
      await sleep(1_000);
      const killedAt = Date.now();
      await victim.kill();
      await waitFor(
        'etcdctl member list shows n4 as a voter',
        REPLACE_AFTER_MS + REPLACE_SLACK_MS,
        async () => {
          const n4 = (await memberList(c.endpoints(survivors))).find((m) => m.name === 'n4');
          return n4 !== undefined && n4.isLearner !== true ? true : null;
        },
        { intervalMs: 250 },
      );
      const replacedMs = Date.now() - killedAt;
      promoted = true;
      await sleep(1_000); // writes go on after the replacement
      stop = true;
      await writer;
      gapMsMax = Math.max(gapMsMax, Date.now() - lastOkMs);
      process.stderr.write(
        `cold standby voter ${replacedMs} ms after the kill; ${acked.size} acknowledged writes; longest write pause ${gapMsMax} ms\n`,
      );
      assert.ok(
        ackedAfterPromotion > 0,
        `writes go on after the promotion (${ackedAfterPromotion})`,
      );
      assert.ok(gapMsMax < WRITE_GAP_MS_MAX, `longest write pause ${gapMsMax} ms`);

      const rows = await registry(await c.leader());
      const byName = new Map(rows.map((r) => [r.name, r]));
      assert.equal(byName.get('n4')?.role, 'voter');
      assert.equal(byName.get(victim.name)?.role, 'standby');
      assert.equal(rows.filter((r) => r.role === 'voter').length, 3, 'three voters');

      // Promoted, n4 serves: it holds every acknowledged write.
      const n4 = c.member('n4');
      await waitFor('n4 applied the leader commit index', 20_000, async () => {
        const ls = await (await c.leader()).status();
        return (await n4.status()).appliedIndex >= ls.commitIndex ? true : null;
      });
      const res = await call(
        kv(n4),
        'Range',
        { key: Buffer.from('cold/'), rangeEnd: Buffer.from('cold0'), serializable: true },
        10_000,
      );
      const held = new Map(
        ((res.kvs ?? []) as { key: Buffer; value: Buffer }[]).map((k) => [
          k.key.toString(),
          k.value.toString(),
        ]),
      );
      const missing = [...acked].filter(([k, v]) => held.get(k) !== v).map(([k]) => k);
      assert.deepEqual(missing.slice(0, 10), [], `${missing.length} acknowledged writes missing`);
      await call(kv(n4), 'Put', { key: Buffer.from('cold/after'), value: Buffer.from('1') }, 5_000);
      const n4Id = BigInt(`0x${(await n4.status()).memberId}`);
      assert.deepEqual(
        await watchOutcome(n4.spec.client),
        { answeredBy: n4Id },
        'the promoted standby serves watches itself',
      );
    }));

  test('the killed voter, restarted, rejoins as a standby and serves no client traffic', () =>
    c.guard('rejoin', async () => {
      const victim = c.members.find((m) => !m.running)!;
      assert.ok(victim !== undefined, 'the killed member');
      victim.spawn();
      await c.waitForCatchUp(30_000);
      const rows = await registry(await c.leader());
      const back = rows.find((r) => r.name === victim.name)!;
      assert.equal(back.role, 'standby', 'the returning member is a standby');
      assert.equal(back.placement, 'learner', 'a hot standby rests as a learner');
      assert.equal(rows.filter((r) => r.role === 'voter').length, 3, 'three voters');
      await assertServesNone(victim, 'hot');
      const status = JSON.parse(
        await ctlOk([victim.spec.client], ['endpoint', 'status', '-w', 'json']),
      ) as { Status: { raftAppliedIndex?: number } }[];
      assert.equal(status.length, 1);
    }));
});
