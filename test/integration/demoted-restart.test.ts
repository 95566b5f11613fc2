/**
 * Roles stay true across restarts and demotions, on real processes: 3 voters whose standby mode
 * is cold (n1..n3) and a hot standby (n4); replaceAfter is 2 s.
 *
 * 1. kill -9 a follower voter: n4 is promoted and the victim demoted to a cold standby, which
 *    removes it from the Raft configuration while it is down: it never receives the change, and
 *    its own registry still says "voter". Restarted, it is polled with serializable reads from
 *    the moment it starts: every answer is the standby refusal (or no answer: not listening
 *    yet), never data; within a bound it reports itself a cold standby (admin /status and
 *    `tandem status --json`), etcdctl against it shows the refusal, and the others' term is
 *    unchanged (it disrupted nothing).
 * 2. A watch open on a voter when it is made a standby (`tandem member standby`) is cancelled
 *    with a reason the client sees (etcd's cancel_reason); etcdctl watch ends.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
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
import { type LocalCluster, type LocalMember, REPO_DIR } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { call, ctlOk, ETCDCTL, ETCDCTL_MISSING, grpcClients, killCtls } from './clients.js';
import { startCluster } from './cluster.js';

const REPLACE_AFTER_MS = 2_000;
/** Unreachable after 2 s, replaced after 2 s more, on a loaded 2-core machine. */
const REPLACE_SLACK_MS = 15_000;
/** From spawn (tsx compiles on the fly) to reporting itself a cold standby. */
const KNOWS_ROLE_MS = 30_000;
/**
 * Reads go on for this long after the member knows its role, and must have been refused at least
 * once by then. Longer than grpc-js's reconnect backoff (1 s, then ×1.6 with jitter): the channel
 * met a closed port while the member started, and may sleep past a shorter window (seen failing
 * at 2 s with every read unanswered).
 */
const KEEP_POLLING_MS = 8_000;
const READ_GAP_MS = 50;
const READ_DEADLINE_MS = 1_000;
const POLL_ROUNDS_MAX = 2_000;
const STANDBY_REFUSAL = /serves no client traffic/;

interface SelfStatus {
  role: string;
  standbyMode: string;
  roleSource: string;
  term: number;
  registry: { name: string; role: string; standbyMode: string; placement: string }[];
}

type ReadOutcome = 'served' | 'refused' | 'no answer' | `other: ${string}`;

function classify(error: ServiceError | null): ReadOutcome {
  if (error === null) return 'served';
  if (error.code === GrpcStatus.UNAVAILABLE && STANDBY_REFUSAL.test(error.details)) {
    return 'refused';
  }
  // Not listening yet (connection refused) or not answering in time: no answer at all.
  if (error.code === GrpcStatus.UNAVAILABLE || error.code === GrpcStatus.DEADLINE_EXCEEDED) {
    return 'no answer';
  }
  return `other: ${error.code} ${error.details}`;
}

/** POST /member/<op> on `admin`; resolves with the HTTP status and body (bounded). */
function memberOp(
  admin: string,
  op: string,
  name: string,
): Promise<{ code: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `http://${admin}/member/${op}`,
      { method: 'POST', timeout: 15_000, headers: { 'content-type': 'application/json' } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve({ code: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`POST ${admin}/member/${op} timed out`)));
    req.on('error', reject);
    req.end(JSON.stringify({ name }));
  });
}

/** `tandem status --admin <admins> --json`, the CLI as an operator runs it (bounded). */
function tandemStatusJson(
  admins: readonly string[],
): Promise<{ name: string; role: string; standbyMode: string }[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/bin.ts', 'status', '--admin', admins.join(','), '--json'],
      { cwd: REPO_DIR },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out) as { name: string; role: string; standbyMode: string }[]);
      } catch (error) {
        reject(new Error(`tandem status --json printed ${JSON.stringify(out)}: ${error}`));
      }
    });
  });
}

/** etcdctl processes this file started, killed by PID in `after`. */
const WATCHERS = new Set<ChildProcess>();

/** `etcdctl watch key` left running: its output, and its exit once it ends. */
function watchWithEtcdctl(endpoint: string, key: string) {
  const child = spawn(ETCDCTL, [`--endpoints=${endpoint}`, '--dial-timeout=3s', 'watch', key], {
    env: { ...process.env, ETCDCTL_API: '3' },
  });
  WATCHERS.add(child);
  let stdout = '';
  let stderr = '';
  let exit: { code: number | null; stderr: string } | null = null;
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.once('close', (code) => {
    WATCHERS.delete(child);
    exit = { code, stderr };
  });
  return {
    until: (text: string, timeoutMs: number) =>
      waitFor(`etcdctl watch prints ${text}`, timeoutMs, () =>
        stdout.includes(text) ? true : null,
      ),
    exit: () => exit,
  };
}

/** A raw Watch stream: every response it receives, and a way to end it. */
function rawWatch(endpoint: string, key: string) {
  const pkg = loadPackageDefinition(loadEtcdProto()) as unknown as {
    etcdserverpb: Record<string, ServiceClientConstructor>;
  };
  const client = new pkg.etcdserverpb.Watch!(endpoint, credentials.createInsecure());
  const stream = (
    client as unknown as {
      Watch(md: Metadata): NodeJS.EventEmitter & { write(r: object): void; cancel(): void };
    }
  ).Watch(new Metadata());
  const responses: {
    created?: boolean;
    canceled?: boolean;
    cancel_reason?: string;
    cancelReason?: string;
  }[] = [];
  stream.on('data', (r: (typeof responses)[number]) => responses.push(r));
  stream.on('error', () => {}); // the test reads the responses; the end status is not checked
  stream.write({ createRequest: { key: Buffer.from(key) } });
  return {
    responses,
    close(): void {
      stream.cancel();
      client.close();
    },
  };
}

describe('roles stay true across restarts and demotions', {
  skip: ETCDCTL_MISSING,
  timeout: 240_000,
}, () => {
  let c: LocalCluster;
  const conns = new Map<string, ReturnType<typeof grpcClients>>();

  before(async () => {
    c = await startCluster({
      label: 'demoted-restart',
      size: 4,
      roles: {
        n1: { role: 'voter', standbyMode: 'cold', zone: 'zone-a' },
        n2: { role: 'voter', standbyMode: 'cold', zone: 'zone-a' },
        n3: { role: 'voter', standbyMode: 'cold', zone: 'zone-a' },
        n4: { role: 'standby', standbyMode: 'hot', zone: 'zone-a' },
      },
      extraConfig: { redundancy: { replaceAfter: `${REPLACE_AFTER_MS}ms` } },
    });
    for (const m of c.members) conns.set(m.name, grpcClients(m.spec.client));
  });

  after(async () => {
    killCtls();
    for (const child of WATCHERS) if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    for (const conn of conns.values()) conn.close();
    await c?.destroy({ kill: true });
  });

  const self = async (m: LocalMember) => (await m.status()) as unknown as SelfStatus;

  /**
   * One serializable read on `m`, classified. As if forwarded already (`tandem-forwarded-by`),
   * `m` must answer from its own data or refuse: a member that serves no clients would otherwise
   * forward the read to one that does.
   */
  function readOnce(m: LocalMember): Promise<ReadOutcome> {
    return call(
      conns.get(m.name)!.kv,
      'Range',
      { key: Buffer.from('demoted/k'), serializable: true },
      READ_DEADLINE_MS,
      { [FORWARDED_BY_KEY]: 'test' },
    ).then(
      () => 'served' as const,
      (error: ServiceError) => classify(error),
    );
  }

  /** The member id (decimal) in the header of an answer. */
  const answeredBy = (r: Record<string, unknown>): bigint =>
    BigInt(String((r.header as { memberId: string }).memberId));

  test('a voter demoted to a cold standby while down never serves as a voter after restarting', () =>
    c.guard('demoted restart', async () => {
      const leader = await c.leader();
      const victim = c.members.find((m) => m !== leader && m.name !== 'n4')!;
      await call(conns.get(leader.name)!.kv, 'Put', {
        key: Buffer.from('demoted/k'),
        value: Buffer.from('before'),
      });
      await waitFor('the voter serves before', 10_000, async () =>
        (await readOnce(victim)) === 'served' ? true : null,
      );
      await victim.kill();
      await waitFor(
        `n4 promoted and ${victim.name} removed as a cold standby`,
        REPLACE_AFTER_MS + REPLACE_SLACK_MS,
        async () => {
          const rows = (await self(await c.leader())).registry;
          const n4 = rows.find((r) => r.name === 'n4');
          const v = rows.find((r) => r.name === victim.name);
          return n4?.role === 'voter' && v?.role === 'standby' && v.placement === 'none'
            ? true
            : null;
        },
        { intervalMs: 250 },
      );
      const others = c.running;
      const termsBefore = await Promise.all(others.map(async (m) => (await m.status()).term));

      victim.spawn();
      // A fresh channel: the old one has been reconnecting with growing backoff while the victim
      // was down, and could sleep through the whole polling window below.
      conns.get(victim.name)!.close();
      conns.set(victim.name, grpcClients(victim.spec.client));
      const seen = new Map<ReadOutcome, number>();
      let knownAtMs: number | null = null;
      const startedMs = Date.now();
      for (let round = 0; round < POLL_ROUNDS_MAX; round++) {
        const outcome = await readOnce(victim);
        seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
        assert.equal(
          outcome === 'served' || outcome.startsWith('other'),
          false,
          `read answered: ${outcome}`,
        );
        if (knownAtMs === null) {
          const s = await self(victim).catch(() => null);
          if (s?.role === 'standby' && s.standbyMode === 'cold') knownAtMs = Date.now();
          else
            assert.ok(
              Date.now() - startedMs < KNOWS_ROLE_MS,
              `no cold standby role yet: ${JSON.stringify(s && { role: s.role, mode: s.standbyMode, source: s.roleSource })}`,
            );
        } else if (Date.now() - knownAtMs > KEEP_POLLING_MS) {
          break;
        }
        await sleep(READ_GAP_MS);
      }
      assert.ok(knownAtMs !== null, 'the restarted member learned its role');
      assert.ok((seen.get('refused') ?? 0) > 0, `refusals seen: ${JSON.stringify([...seen])}`);
      process.stderr.write(
        `${victim.name} knew it is a cold standby ${knownAtMs - startedMs} ms after spawn; reads: ${JSON.stringify([...seen])}\n`,
      );

      const s = await self(victim);
      assert.deepEqual([s.role, s.standbyMode, s.roleSource], ['standby', 'cold', 'leader']);
      const rows = await tandemStatusJson([victim.spec.admin]);
      assert.equal(rows.length, 1);
      assert.deepEqual([rows[0]!.role, rows[0]!.standbyMode], ['standby', 'cold']);
      // A client that knows only this member is still served: by another member, forwarded.
      const victimId = BigInt(`0x${(await victim.status()).memberId}`);
      const read = await call(conns.get(victim.name)!.kv, 'Range', {
        key: Buffer.from('demoted/k'),
        serializable: true,
      });
      assert.notEqual(answeredBy(read), victimId, 'answered by a member that serves clients');
      assert.equal(
        await ctlOk([victim.spec.client], ['get', 'demoted/k', '--print-value-only']),
        'before\n',
      );
      assert.equal(await ctlOk([victim.spec.client], ['put', 'demoted/k', 'x']), 'OK\n');

      const termsAfter = await Promise.all(others.map(async (m) => (await m.status()).term));
      assert.deepEqual(termsAfter, termsBefore, 'the others kept their term: no disruption');
      await c.waitForLeader(10_000, { among: others });
    }));

  test('a watch on a voter made a standby is cancelled with a reason the client sees', () =>
    c.guard('watch cancel', async () => {
      const leader = await c.leader();
      // A follower voter whose standby mode is cold (n4, promoted, is a hot one).
      const rows = (await self(leader)).registry;
      const coldVoter = (m: LocalMember): boolean =>
        rows.some((r) => r.name === m.name && r.role === 'voter' && r.standbyMode === 'cold');
      const target = c.running.find((m) => m !== leader && coldVoter(m))!;
      assert.ok(target !== undefined, 'a cold-mode follower voter');
      assert.equal((await self(target)).role, 'voter', `${target.name} knows it is a voter`);
      const raw = rawWatch(target.spec.client, 'demoted/w');
      const etcdctlWatch = watchWithEtcdctl(target.spec.client, 'demoted/w');
      await waitFor('the raw watch is created', 10_000, () =>
        raw.responses.some((r) => r.created) ? true : null,
      );
      // etcdctl prints nothing until an event: one proves its watch is live.
      await call(conns.get(leader.name)!.kv, 'Put', {
        key: Buffer.from('demoted/w'),
        value: Buffer.from('1'),
      });
      await etcdctlWatch.until('demoted/w', 10_000);

      const op = await memberOp(leader.spec.admin, 'standby', target.name);
      assert.equal(op.code, 200, `tandem member standby ${target.name}: ${op.body}`);
      const cancelled = await waitFor(
        'the raw watch is cancelled',
        10_000,
        () => raw.responses.find((r) => r.canceled) ?? null,
      );
      const reason = cancelled.cancel_reason ?? cancelled.cancelReason ?? '';
      assert.match(
        reason,
        new RegExp(`member ${target.name} is a cold standby and serves no client traffic`),
      );
      const exit = await waitFor('etcdctl watch ends', 10_000, () => etcdctlWatch.exit());
      assert.notEqual(exit.code, 0, 'etcdctl watch exits with an error');
      assert.match(exit.stderr, /canceled/);
      raw.close();
    }));
});
