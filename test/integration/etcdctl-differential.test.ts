/**
 * DIFFERENTIAL: one etcdctl (Debian etcd-client 3.4) script run step by step against a real etcd
 * (Debian etcd-server, three members on loopback) and a three-member tandem cluster. Both start
 * empty and get the same requests in the same order, so revisions, values, hashes and errors must
 * match; what legitimately differs (member, cluster and lease ids, ports, versions, timings, DB
 * sizes, raft indices) is normalized, and every remaining difference is either a failure or one
 * of EXCEPTIONS below, each with its reason. An exception that stops differing fails too, so the
 * list stays true.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../../src/api/proto.js';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { type CtlResult, ctl, ctlStream, ETCDCTL, ETCDCTL_MISSING, killCtls } from './clients.js';
import { startCluster } from './cluster.js';
import { ETCD_MISSING, type EtcdCluster, startEtcdCluster } from './real-etcd.js';

const execFileAsync = promisify(execFile);

/** A long-running command (watch, elect, lock) is stopped once its output matches, or then. */
const STREAM_WAIT_MS = 10_000;

/**
 * Steps whose normalized output differs from etcd's on purpose or for a known reason, by name.
 * Each reason names where the difference comes from.
 */
const EXCEPTIONS: Readonly<Record<string, string>> = {
  'endpoint hashkv':
    'the history holds a key put with a lease, and lease ids differ between the systems; ' +
    'HashKV hashes the KeyValue with its lease (the step before leases matches)',
  'endpoint hashkv --cluster': 'as endpoint hashkv',
};

/** One system under test and what was learned about it (ids, ports) for normalizing. */
interface System {
  readonly name: 'etcd' | 'tandem';
  readonly endpoints: readonly string[];
  readonly dir: string;
  /** Raw text → placeholder; longest first when applied. */
  readonly tokens: Map<string, string>;
  leases: number;
  memberIdByName: Map<string, string>;
}

interface Step {
  readonly name: string;
  readonly args: readonly string[] | ((sys: System) => readonly string[]);
  readonly stdin?: string;
  /** Only the first endpoint (n1) instead of all three. */
  readonly one?: boolean;
  /** A long-running command: its output once `until` holds, then it is stopped. */
  readonly until?: (out: string) => boolean;
  /** Step-specific normalization, after the common one. */
  readonly normalize?: (text: string) => string;
  /** Learns tokens from the raw result (lease ids, member ids). */
  readonly learn?: (result: CtlResult, sys: System) => void;
  /** Lines in any order (commands that ask every member at once). */
  readonly unordered?: boolean;
  /** Output is a protobuf RangeResponse, compared decoded. */
  readonly binary?: boolean;
}

function token(sys: System, raw: string, placeholder: string): void {
  sys.tokens.set(raw, placeholder);
}

/** A hex id also appears in decimal (JSON output) and sometimes as a signed decimal. */
function idTokens(sys: System, hex: string, placeholder: string): void {
  const value = BigInt(`0x${hex}`);
  token(sys, hex, placeholder);
  token(sys, value.toString(), placeholder);
  if (value >= 2n ** 63n) token(sys, (value - 2n ** 64n).toString(), placeholder);
}

function learnLease(result: CtlResult, sys: System): void {
  const hex = /lease ([0-9a-f]+) granted/.exec(result.stdout)?.[1];
  if (hex !== undefined) idTokens(sys, hex, `<lease${++sys.leases}>`);
}

function learnMemberAdded(result: CtlResult, sys: System): void {
  const hex = /Member\s+([0-9a-f]+) added/.exec(result.stdout)?.[1];
  if (hex !== undefined) idTokens(sys, hex, '<added-member>');
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function normalize(sys: System, text: string): string {
  let out = text;
  const raws = [...sys.tokens.keys()].sort((a, b) => b.length - a.length);
  for (const raw of raws) {
    out = out.replace(
      new RegExp(`(?<![0-9a-f])${escapeRegExp(raw)}(?![0-9a-f])`, 'g'),
      sys.tokens.get(raw)!,
    );
  }
  return (
    out
      .replace(new RegExp(escapeRegExp(sys.dir), 'g'), '<dir>')
      .replace(/took = [0-9.]+(µs|ms|s)/g, 'took = <t>')
      .replace(/"took":"[^"]*"/g, '"took":"<t>"')
      // The server version: tandem reports the etcd API it implements (3.5.0); etcd its own.
      .replace(/"version":"3\.\d+\.\d+"/g, '"version":"<v>"')
      .replace(/ 3\.(4|5)\.\d+,/g, ' <v>,')
      .replace(/\| +3\.(4|5)\.\d+ \|/g, '| <v> |')
      // Storage and raft log sizes differ by design (LMDB vs bbolt; tandem's own log entries);
      // terms too: a move-leader to the member that already leads elects nobody.
      .replace(
        /"(dbSize|dbSizeInUse|raftIndex|raftAppliedIndex|raft_term|raftTerm)":"?\d+"?/g,
        '"$1":<n>',
      )
      .replace(/"RaftTerm" : \d+/g, '"RaftTerm" : <n>')
      .replace(/\d+(\.\d+)? [kMG]?B\b/g, '<size>')
      // Which member answers is the client's pick (etcdctl balances over all endpoints).
      .replace(/"member_id":("?)<n\d>/g, '"member_id":$1<member>')
      .replace(/"MemberID" : <n\d>/g, '"MemberID" : <member>')
      // etcdctl pads ids to 16 hex digits (%16x); tandem's are shorter.
      .replace(/(Member|cluster) +</g, '$1 <')
  );
}

/** `endpoint status` in simple and table formats: term and indices are per-system. */
function statusColumns(text: string): string {
  return text
    .replace(/, (true|false), (true|false), \d+, \d+, \d+, /g, ', $1, $2, <n>, <n>, <n>, ')
    .replace(
      /\| +(true|false) \| +(true|false) \| +\d+ \| +\d+ \| +\d+ \|/g,
      '| $1 | $2 | <n> | <n> | <n> |',
    )
    .replace(/[-+]+\n/g, '<rule>\n')
    .replace(/ {2,}/g, ' ');
}

/** Table borders and padding depend on the widths of ids and sizes. */
function table(text: string): string {
  return text.replace(/^[-+]+$/gm, '<rule>').replace(/ {2,}/g, ' ');
}

/** RangeResponse bytes (`-w protobuf`) as JSON, the header's ids normalized by the caller. */
let rangeResponse: protobuf.Type | null = null;
function decodeRange(bytes: Buffer): string {
  rangeResponse ??= new protobuf.Root()
    .loadSync(join(PROTO_DIR, 'rpc.proto'), { keepCase: true })
    .lookupType('etcdserverpb.RangeResponse');
  const msg = rangeResponse.decode(bytes);
  return `${JSON.stringify(rangeResponse.toObject(msg, { longs: String, bytes: String }))}\n`;
}

/** etcdctl's raw stdout (`-w protobuf` is binary). */
async function ctlBytes(endpoints: readonly string[], args: readonly string[]): Promise<CtlResult> {
  try {
    const { stdout } = await execFileAsync(
      ETCDCTL,
      [`--endpoints=${endpoints.join(',')}`, '--dial-timeout=3s', '--command-timeout=10s', ...args],
      { encoding: 'buffer', timeout: 15_000, env: { ...process.env, ETCDCTL_API: '3' } },
    );
    return { code: 0, stdout: decodeRange(stdout), stderr: '' };
  } catch (err) {
    const e = err as { code?: number; stderr?: Buffer };
    return { code: e.code ?? null, stdout: '', stderr: e.stderr?.toString() ?? String(err) };
  }
}

const countOf = (re: RegExp) => (out: string) => out.match(re)?.length ?? 0;
const events = countOf(/^(PUT|DELETE)$/gm);

/** The script: the same requests, in the same order, for both systems. */
const STEPS: readonly Step[] = [
  { name: 'version', args: ['version'] },
  {
    name: 'move-leader to n1',
    args: (s) => ['move-leader', s.memberIdByName.get('n1')!],
    normalize: (t) => t.replace(/from <n\d> /, 'from <other> '),
  },
  { name: 'put', args: ['put', 'k/a', '1'] },
  { name: 'put -w json', args: ['put', 'k/b', '2', '-w', 'json'] },
  { name: 'put k/c', args: ['put', 'k/c', '3'] },
  { name: 'put --prev-kv', args: ['put', 'k/a', '1b', '--prev-kv'] },
  { name: 'put --prev-kv -w json', args: ['put', 'k/a', '1c', '--prev-kv', '-w', 'json'] },
  { name: 'put --ignore-value on a missing key', args: ['put', 'k/none', '--ignore-value'] },
  { name: 'put --ignore-value', args: ['put', 'k/b', '--ignore-value'] },
  { name: 'put with an unknown lease', args: ['put', 'k/x', 'v', '--lease=1234'] },
  { name: 'get', args: ['get', 'k/a'] },
  { name: 'get missing', args: ['get', 'nothing'] },
  { name: 'get --prefix', args: ['get', '--prefix', 'k/'] },
  { name: 'get range', args: ['get', 'k/a', 'k/c'] },
  { name: 'get --from-key', args: ['get', '--from-key', 'k/b'] },
  { name: 'get --limit', args: ['get', '--prefix', 'k/', '--limit=2'] },
  {
    name: 'get --limit -w json (more)',
    args: ['get', '--prefix', 'k/', '--limit=1', '-w', 'json'],
  },
  ...(['CREATE', 'KEY', 'MODIFY', 'VALUE', 'VERSION'] as const).flatMap((by) =>
    (['ASCEND', 'DESCEND'] as const).map(
      (order): Step => ({
        name: `get --sort-by=${by} --order=${order}`,
        args: ['get', '--prefix', 'k/', `--sort-by=${by}`, `--order=${order}`, '--keys-only'],
      }),
    ),
  ),
  { name: 'get --keys-only', args: ['get', '--prefix', 'k/', '--keys-only'] },
  { name: 'get --print-value-only', args: ['get', '--prefix', 'k/', '--print-value-only'] },
  { name: 'get --rev', args: ['get', 'k/a', '--rev=2'] },
  { name: 'get --rev future', args: ['get', 'k/a', '--rev=1000'] },
  { name: 'get --consistency=s', args: ['get', 'k/a', '--consistency=s'], one: true },
  { name: 'get -w json', args: ['get', '--prefix', 'k/', '-w', 'json'] },
  { name: 'get -w fields', args: ['get', 'k/a', '-w', 'fields'] },
  { name: 'get -w protobuf', args: ['get', 'k/a', '-w', 'protobuf'], binary: true },
  { name: 'get --hex', args: ['get', 'k/a', '--hex'] },
  {
    name: 'watch --rev=2 --prefix (history)',
    args: ['watch', '--rev=2', '--prefix', 'k/'],
    until: (o) => events(o) >= 5,
  },
  {
    name: 'watch --prev-kv',
    args: ['watch', '--rev=2', '--prev-kv', 'k/a'],
    until: (o) => events(o) >= 3,
  },
  {
    name: 'watch -w json',
    args: ['watch', '--rev=2', 'k/b', '-w', 'json'],
    until: (o) => o.includes('"events"'),
  },
  {
    name: 'txn success',
    args: ['txn'],
    stdin: 'value("k/b") = "2"\n\nput k/t yes\nget k/b\n\nput k/t no\n\n',
  },
  {
    name: 'txn failure',
    args: ['txn'],
    stdin: 'mod("k/b") > "100"\n\nput k/t yes\n\nget k/t\ndel k/none\n\n',
  },
  {
    name: 'txn -w json',
    args: ['txn', '-w', 'json'],
    stdin: 'version("k/a") = "3"\n\nget k/a\n\n\n',
  },
  { name: 'txn with a bad compare', args: ['txn'], stdin: 'nonsense("k/a") = "1"\n\n\n\n' },
  { name: 'del', args: ['del', 'k/t'] },
  { name: 'del missing', args: ['del', 'k/none'] },
  { name: 'del --prev-kv', args: ['del', 'k/c', '--prev-kv'] },
  { name: 'put k/c again', args: ['put', 'k/c', '3b'] },
  { name: 'del --prefix', args: ['del', '--prefix', 'k/', '-w', 'json'] },
  { name: 'put after del', args: ['put', 'k/d', '4'] },
  { name: 'endpoint hashkv before leases', args: ['endpoint', 'hashkv'], unordered: true },
  { name: 'lease grant', args: ['lease', 'grant', '300'], learn: learnLease },
  {
    name: 'put --lease',
    args: (s) => [
      'put',
      'l/a',
      'x',
      `--lease=${[...s.tokens].find(([, p]) => p === '<lease1>')![0]}`,
    ],
  },
  {
    name: 'lease timetolive --keys',
    args: (s) => ['lease', 'timetolive', '--keys', leaseHex(s, 1)],
    normalize: (t) => t.replace(/remaining\(\d+s\)/, 'remaining(<s>)'),
  },
  {
    name: 'lease timetolive -w json',
    args: (s) => ['lease', 'timetolive', leaseHex(s, 1), '-w', 'json'],
    normalize: (t) => t.replace(/"ttl":\d+/, '"ttl":<s>'),
  },
  { name: 'lease list', args: ['lease', 'list'] },
  {
    name: 'lease keep-alive --once',
    args: (s) => ['lease', 'keep-alive', '--once', leaseHex(s, 1)],
  },
  {
    name: 'lease keep-alive (stream)',
    args: (s) => ['lease', 'keep-alive', leaseHex(s, 1)],
    until: (o) => o.includes('keepalived'),
  },
  { name: 'lease revoke', args: (s) => ['lease', 'revoke', leaseHex(s, 1)] },
  { name: 'get after revoke', args: ['get', 'l/a'] },
  { name: 'lease timetolive revoked', args: (s) => ['lease', 'timetolive', leaseHex(s, 1)] },
  { name: 'lease revoke unknown', args: ['lease', 'revoke', '1234'] },
  { name: 'lease keep-alive --once unknown', args: ['lease', 'keep-alive', '--once', '1234'] },
  { name: 'compaction', args: ['compaction', '5'] },
  { name: 'get below compaction', args: ['get', 'k/a', '--rev=3'] },
  { name: 'watch below compaction', args: ['watch', '--rev=3', 'k/a'], until: (o) => o.length > 0 },
  { name: 'compaction again below', args: ['compaction', '4'] },
  { name: 'compaction --physical', args: ['compaction', '--physical', '6'] },
  { name: 'compaction future', args: ['compaction', '1000'] },
  { name: 'member list', args: ['member', 'list'], unordered: true },
  {
    name: 'member list -w table',
    args: ['member', 'list', '-w', 'table'],
    normalize: table,
    unordered: true,
  },
  {
    name: 'member list -w json',
    args: ['member', 'list', '-w', 'json'],
    normalize: sortJsonMembers,
  },
  {
    name: 'member add --learner',
    args: ['member', 'add', 'n9', '--learner', '--peer-urls=http://127.0.0.1:1'],
    learn: learnMemberAdded,
    normalize: sortInitialCluster,
  },
  { name: 'member list with the learner', args: ['member', 'list'], unordered: true },
  {
    name: 'member remove the learner',
    args: (s) => ['member', 'remove', tokenRaw(s, '<added-member>')],
  },
  { name: 'member remove unknown', args: ['member', 'remove', '1234'] },
  {
    name: 'member update unknown',
    args: ['member', 'update', '1234', '--peer-urls=http://127.0.0.1:1'],
  },
  { name: 'member promote unknown', args: ['member', 'promote', '1234'] },
  {
    name: 'endpoint status',
    args: ['endpoint', 'status'],
    normalize: statusColumns,
    unordered: true,
  },
  {
    name: 'endpoint status --cluster',
    args: ['endpoint', 'status', '--cluster'],
    normalize: statusColumns,
    unordered: true,
  },
  {
    name: 'endpoint status -w table',
    args: ['endpoint', 'status', '-w', 'table'],
    normalize: statusColumns,
    unordered: true,
  },
  {
    name: 'endpoint status -w json',
    args: ['endpoint', 'status', '-w', 'json'],
    normalize: sortJsonArray,
  },
  { name: 'endpoint health', args: ['endpoint', 'health'], unordered: true },
  { name: 'endpoint health --cluster', args: ['endpoint', 'health', '--cluster'], unordered: true },
  {
    name: 'endpoint health -w json',
    args: ['endpoint', 'health', '-w', 'json'],
    normalize: sortJsonArray,
  },
  { name: 'endpoint hashkv', args: ['endpoint', 'hashkv'], unordered: true },
  { name: 'endpoint hashkv --cluster', args: ['endpoint', 'hashkv', '--cluster'], unordered: true },
  { name: 'endpoint hashkv --rev', args: ['endpoint', 'hashkv', '--rev=7'], unordered: true },
  { name: 'alarm list', args: ['alarm', 'list'] },
  { name: 'alarm disarm', args: ['alarm', 'disarm'] },
  { name: 'defrag', args: ['defrag'], unordered: true },
  { name: 'defrag --cluster', args: ['defrag', '--cluster'], unordered: true },
  { name: 'lock with a command', args: ['lock', 'mylock', 'echo', 'locked'] },
  {
    name: 'lock (held, stopped)',
    args: ['lock', 'mylock'],
    until: (o) => o.includes('\n'),
    normalize: sessionKeys,
  },
  {
    name: 'elect (campaign, stopped)',
    args: ['elect', 'myelection', 'p1'],
    until: (o) => o.split('\n').length >= 3,
    normalize: sessionKeys,
  },
  { name: 'elect -l with no leader', args: ['elect', '-l', 'noelection'], until: () => false },
  { name: 'move-leader to n2', args: (s) => ['move-leader', s.memberIdByName.get('n2')!] },
  { name: 'move-leader unknown', args: ['move-leader', '1234'] },
  { name: 'move-leader back to n1', args: (s) => ['move-leader', s.memberIdByName.get('n1')!] },
  { name: 'snapshot save', args: (s) => ['snapshot', 'save', join(s.dir, 'snap.db')], one: true },
  {
    name: 'snapshot status',
    args: (s) => ['snapshot', 'status', join(s.dir, 'snap.db'), '-w', 'json'],
    normalize: (t) =>
      t.replace(/"hash":\d+/, '"hash":<h>').replace(/"totalSize":\d+/, '"totalSize":<n>'),
  },
  { name: 'user list', args: ['user', 'list'] },
  { name: 'role list', args: ['role', 'list'] },
  { name: 'auth enable without root', args: ['auth', 'enable'] },
  { name: 'get at the end', args: ['get', '--prefix', '', '--keys-only'], normalize: sessionKeys },
];

function tokenRaw(sys: System, placeholder: string): string {
  for (const [raw, p] of sys.tokens)
    if (p === placeholder && /^[0-9a-f]+$/.test(raw) && /[a-f]/.test(raw)) return raw;
  for (const [raw, p] of sys.tokens) if (p === placeholder) return BigInt(raw).toString(16);
  throw new Error(`no token ${placeholder} on ${sys.name}`);
}

function leaseHex(sys: System, n: number): string {
  return tokenRaw(sys, `<lease${n}>`);
}

/** lock/elect print keys under the session's lease (granted inside etcdctl): `name/<lease>`. */
function sessionKeys(text: string): string {
  return text.replace(/^([a-z]+)\/[0-9a-f]+$/gm, '$1/<session-lease>');
}

/** `member add` lists the members in the server's order (by id, and ids differ). */
function sortInitialCluster(text: string): string {
  return text.replace(
    /ETCD_INITIAL_CLUSTER="([^"]*)"/,
    (_m, list: string) => `ETCD_INITIAL_CLUSTER="${list.split(',').sort().join(',')}"`,
  );
}

function sortJsonMembers(text: string): string {
  return text.replace(/"members":\[(.*)\]/, (_m, body: string) => {
    const members = body.split(/(?<=\}),(?=\{)/).sort();
    return `"members":[${members.join(',')}]`;
  });
}

function sortJsonArray(text: string): string {
  const t = text.trim();
  if (!t.startsWith('[')) return text;
  return `[${t
    .slice(1, -1)
    .split(/(?<=\}),(?=\{)/)
    .sort()
    .join(',')}]\n`;
}

interface Outcome {
  readonly code: number | null | 'timeout';
  readonly stdout: string;
  /** "Error:" lines only: etcdctl's warnings and retry logs carry timestamps. */
  readonly errors: string;
}

async function runStep(step: Step, sys: System): Promise<Outcome> {
  const endpoints = step.one ? [sys.endpoints[0]!] : [...sys.endpoints];
  const args = typeof step.args === 'function' ? step.args(sys) : step.args;
  let result: CtlResult;
  if (step.until !== undefined) {
    const stream = ctlStream(endpoints, args);
    let stdout: string;
    try {
      stdout = await stream.until(step.until, STREAM_WAIT_MS);
    } catch {
      stdout = stream.output();
    } finally {
      stream.stop();
    }
    result = { code: 0, stdout, stderr: '' };
  } else if (step.binary) {
    result = await ctlBytes(endpoints, args);
  } else {
    try {
      result = await ctl(endpoints, args, step.stdin ?? '');
    } catch (err) {
      return { code: 'timeout', stdout: String(err), errors: '' };
    }
  }
  step.learn?.(result, sys);
  let stdout = normalize(sys, result.stdout);
  if (step.normalize !== undefined) stdout = step.normalize(stdout);
  if (step.unordered) stdout = stdout.split('\n').sort().join('\n');
  const errors = result.stderr
    .split('\n')
    .filter((l) => l.startsWith('Error:') || l.includes('rpc error'))
    .map((l) => normalize(sys, l).replace(/^\{.*"error":"([^"]*)".*$/, '$1'))
    .join('\n');
  return { code: result.code, stdout, errors };
}

/** Learns member and cluster ids by endpoint (names n1..n3 by client address). */
async function learnMembers(sys: System, clients: Readonly<Record<string, string>>): Promise<void> {
  const r = await ctl([...sys.endpoints], ['endpoint', 'status', '-w', 'json']);
  assert.equal(r.code, 0, r.stderr);
  const re = /"Endpoint":"([^"]+)","Status":\{"header":\{"cluster_id":(\d+),"member_id":(\d+)/g;
  for (const m of r.stdout.matchAll(re)) {
    const name = Object.entries(clients).find(([, c]) => m[1]!.endsWith(c))?.[0];
    assert.ok(name !== undefined, m[1]);
    const hex = BigInt(m[3]!).toString(16);
    sys.memberIdByName.set(name, hex);
    idTokens(sys, hex, `<${name}>`);
    idTokens(sys, BigInt(m[2]!).toString(16), '<cluster>');
  }
  assert.equal(sys.memberIdByName.size, 3, r.stdout);
}

const SKIP = ETCDCTL_MISSING || ETCD_MISSING;

describe('etcdctl: etcd and tandem, step by step', { skip: SKIP, timeout: 400_000 }, () => {
  let etcd: EtcdCluster;
  let tandem: LocalCluster;
  const systems: System[] = [];

  before(async () => {
    etcd = await startEtcdCluster(3, 'differential');
    tandem = await startCluster({ label: 'differential' });
    const make = (name: System['name'], endpoints: string[], dir: string): System => ({
      name,
      endpoints,
      dir,
      tokens: new Map(),
      leases: 0,
      memberIdByName: new Map(),
    });
    const e = make('etcd', etcd.endpoints(), etcd.dir);
    const t = make('tandem', tandem.endpoints(), tandem.dir);
    const addresses = (
      sys: System,
      members: readonly { name: string; client: string; peer: string }[],
    ) => {
      for (const m of members) {
        token(sys, m.client, `<client:${m.name}>`);
        token(sys, m.peer, `<peer:${m.name}>`);
      }
      return Object.fromEntries(members.map((m) => [m.name, m.client]));
    };
    await learnMembers(e, addresses(e, etcd.members));
    await learnMembers(
      t,
      addresses(
        t,
        tandem.members.map((m) => ({ name: m.name, client: m.spec.client, peer: m.spec.peer })),
      ),
    );
    systems.push(e, t);
  });

  after(async () => {
    killCtls();
    await etcd?.destroy();
    await tandem?.destroy({ kill: true });
  });

  test('every step: same normalized output, errors and exit code', {
    timeout: 380_000,
  }, async () => {
    const [e, t] = systems as [System, System];
    const differences: string[] = [];
    const stale: string[] = [];
    for (const step of STEPS) {
      const a = await runStep(step, e);
      const b = await runStep(step, t);
      const same = a.code === b.code && a.stdout === b.stdout && a.errors === b.errors;
      const excused = EXCEPTIONS[step.name];
      if (!same && excused === undefined) {
        differences.push(
          `--- ${step.name}: etcdctl ${(typeof step.args === 'function' ? step.args(e) : step.args).join(' ')}\n` +
            `etcd   (exit ${a.code}):\n${a.stdout}${a.errors}\n` +
            `tandem (exit ${b.code}):\n${b.stdout}${b.errors}`,
        );
      }
      if (same && excused !== undefined) stale.push(step.name);
    }
    assert.deepEqual(stale, [], 'exceptions that no longer differ: remove them');
    assert.equal(differences.length, 0, `differences from etcd:\n${differences.join('\n\n')}`);
  });
});
