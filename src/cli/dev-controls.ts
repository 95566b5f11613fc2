/**
 * `tandem dev`'s controls: the launcher owns the member processes, so it is the one that can
 * kill, pause, restart and partition them and run a load. The dashboard (served by each member,
 * src/api/dashboard.ts) learns this address from the members' `testMode.devControls` and offers
 * these as buttons. Loopback only; answers only the members' own dashboard origins (CORS).
 *
 *   GET  /dev/state                     the cluster as the launcher sees it (below)
 *   GET  /dev/stream?after=N            the same as server-sent events, every POLL_INTERVAL_MS
 *   POST /dev/members/<name>/<action>   kill | pause | resume | restart | partition | heal
 *   POST /dev/load {"seconds": 15}      a bounded load of puts and gets through gRPC
 *   POST /dev/op {"op": "promote", "name": "n4"}   promote | demote | standby | move-leader,
 *                                       sent to the leader's admin endpoint
 *
 * The state: every member with its process state and its own dashboard state (status, live
 * numbers), and one timeline merging the members' events with the launcher's (faults, and the
 * time from a fault to a new leader).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { closeServer, reply } from '../api/admin.js';
import { KvClient } from '../chaos/etcd-client.js';
import { assert } from '../util/assert.js';
import type { LocalCluster, LocalMember } from './local-cluster.js';
import { adminRequest } from './local-net.js';

/** The members are asked this often; each answer round is pushed to the streams at once. */
export const POLL_INTERVAL_MS = 150;
/** Timeline events kept (members' and the launcher's). */
export const TIMELINE_MAX = 500;
/** Open streams at once. */
export const STREAMS_MAX = 16;
export const LOAD_SECONDS_DEFAULT = 15;
export const LOAD_SECONDS_MAX = 120;
/** Operations in flight at once during a load (each client waits for its answer). */
export const LOAD_CLIENTS = 4;
/** A client's operation gives up after this long (a member down, a failover). */
const LOAD_OP_TIMEOUT_MS = 5_000;
/** Keys a load writes (`load/000` …): its writes overwrite them, so history grows, not size. */
export const LOAD_KEYS = 100;
const BODY_BYTES_MAX = 4096;
/** The same configuration change or leader reported by several members within this: once. */
const SHARED_EVENT_WINDOW_MS = 10_000;
/** A member op waits for the leader to apply it. */
const OP_TIMEOUT_MS = 15_000;
/** A poll of one member's dashboard state. */
const POLL_TIMEOUT_MS = 1_000;

const ACTIONS = ['kill', 'pause', 'resume', 'restart', 'partition', 'heal'] as const;
type Action = (typeof ACTIONS)[number];
const OPS = ['promote', 'demote', 'standby', 'move-leader'] as const;

export interface TimelineEvent {
  /** This timeline's sequence (the stream's cursor). */
  readonly seq: number;
  readonly atMs: number;
  /** The member that logged it, or `launcher`. */
  readonly source: string;
  readonly kind: string;
  readonly text: string;
  readonly subject?: string;
  readonly failoverMs?: number;
  readonly term?: number;
}

interface MemberEventPage {
  readonly epochMs: number;
  readonly items: readonly (Omit<TimelineEvent, 'seq' | 'source'> & { seq: number })[];
}

interface MemberDashboardState {
  readonly status: { readonly name: string; readonly isLeader: boolean };
  readonly stats: unknown;
  readonly events: MemberEventPage;
}

interface Load {
  readonly untilMs: number;
  ops: number;
  errors: number;
  /** Set when the controls close: the clients stop at their next operation. */
  stop: boolean;
  /** Clients still running (the last operation of each may end after untilMs). */
  clients: number;
}

interface Cursor {
  epochMs: number;
  seq: number;
}

export interface DevControls {
  readonly url: string;
  close(): Promise<void>;
}

export async function startDevControls(
  cluster: LocalCluster,
  listen: { readonly host: string; readonly port: number },
): Promise<DevControls> {
  assert(/^127\.|^localhost$|^::1$/.test(listen.host), 'dev controls listen on loopback');
  const controls = new Controls(cluster);
  const server = createServer((req, res) => controls.route(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://${listen.host}:${port}`,
    close: async () => {
      controls.close();
      await closeServer(server);
    },
  };
}

class Controls {
  private readonly timeline: TimelineEvent[] = [];
  private nextSeq = 1;
  private readonly cursors = new Map<string, Cursor>();
  private readonly latest = new Map<string, MemberDashboardState>();
  private readonly partitioned = new Set<string>();
  /** Events every member reports, by what they say: when first seen. */
  private readonly recentShared = new Map<string, number>();
  /** Open streams, each with what pushes the state to it (after every poll). */
  private readonly streams = new Map<ServerResponse, () => void>();
  private pollTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private leader: string | null = null;
  /** A fault hit the leader: when, and what, until a new leader is seen. */
  private leaderFault: {
    readonly leader: string;
    readonly atMs: number;
    readonly what: string;
  } | null = null;
  private load: Load | null = null;
  private readonly origins: Set<string>;

  constructor(private readonly cluster: LocalCluster) {
    this.origins = new Set(
      cluster.members.flatMap((m) => {
        const port = m.spec.admin.slice(m.spec.admin.lastIndexOf(':') + 1);
        return [`http://${m.spec.admin}`, `http://localhost:${port}`];
      }),
    );
  }

  close(): void {
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.pollTimer = null;
    if (this.load !== null) this.load.stop = true;
    for (const res of this.streams.keys()) res.end();
    this.streams.clear();
  }

  route(req: IncomingMessage, res: ServerResponse): void {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!this.origins.has(origin)) {
        reply(res, 403, { error: `origin ${origin} is not a member's dashboard`, code: 'ORIGIN' });
        return;
      }
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'origin');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, POST',
        'access-control-allow-headers': 'content-type',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://dev');
    const path = url.pathname;
    if (req.method === 'GET' && path === '/dev/state') {
      this.ensurePolling();
      reply(res, 200, this.state(Number(url.searchParams.get('after') ?? 0) || 0));
      return;
    }
    if (req.method === 'GET' && path === '/dev/stream') {
      this.stream(res, Number(url.searchParams.get('after') ?? 0) || 0);
      return;
    }
    if (req.method !== 'POST') {
      reply(res, 404, { error: 'not found' });
      return;
    }
    const memberAction = /^\/dev\/members\/([A-Za-z0-9._-]+)\/([a-z]+)$/.exec(path);
    const work =
      memberAction !== null
        ? () => this.memberAction(memberAction[1]!, memberAction[2]!)
        : path === '/dev/load'
          ? (body: Record<string, unknown>) => this.startLoad(body.seconds)
          : path === '/dev/op'
            ? (body: Record<string, unknown>) => this.memberOp(body.op, body.name)
            : null;
    if (work === null) {
      reply(res, 404, { error: 'not found' });
      return;
    }
    readJson(req).then(
      (body) =>
        work(body).then(
          (text) => reply(res, 200, { ok: true, text }),
          (error: Error & { status?: number }) =>
            reply(res, error.status ?? 409, { error: error.message, code: 'REFUSED' }),
        ),
      (error: Error) => reply(res, 400, { error: error.message, code: 'BAD_REQUEST' }),
    );
  }

  state(after: number) {
    return {
      members: this.cluster.members.map((m) => ({
        name: m.name,
        admin: m.spec.admin,
        client: m.spec.client,
        zone: m.spec.zone,
        plannedRole: m.spec.role,
        plannedStandbyMode: m.spec.standbyMode,
        process: m.state,
        partitioned: this.partitioned.has(m.name),
        dashboard: m.state === 'running' ? (this.latest.get(m.name) ?? null) : null,
      })),
      load:
        this.load === null
          ? null
          : {
              running: this.load.clients > 0,
              untilMs: this.load.untilMs,
              ops: this.load.ops,
              errors: this.load.errors,
            },
      timeline: this.timeline.filter((e) => e.seq > after),
    };
  }

  private stream(res: ServerResponse, after: number): void {
    if (this.streams.size >= STREAMS_MAX) {
      reply(res, 503, { error: `more than ${STREAMS_MAX} streams`, code: 'BUSY' });
      return;
    }
    this.ensurePolling();
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    let cursor = after;
    const push = (): void => {
      const body = this.state(cursor);
      cursor = body.timeline.at(-1)?.seq ?? cursor;
      res.write(`data: ${JSON.stringify(body)}\n\n`);
    };
    this.streams.set(res, push);
    push();
    res.on('close', () => this.streams.delete(res));
  }

  private ensurePolling(): void {
    if (this.pollTimer !== null) return;
    this.pollTimer = setInterval(() => {
      if (this.polling) return; // the previous poll still waits for a member
      this.polling = true;
      this.poll().finally(() => {
        this.polling = false;
        for (const push of this.streams.values()) push();
      });
    }, POLL_INTERVAL_MS);
    this.pollTimer.unref();
  }

  private async poll(): Promise<void> {
    const running = this.cluster.members.filter((m) => m.state === 'running');
    await Promise.all(running.map((m) => this.pollMember(m)));
    for (const m of this.cluster.members) if (m.state !== 'running') this.latest.delete(m.name);
    const leaders = running.filter((m) => this.latest.get(m.name)?.status.isLeader === true);
    const leader = leaders.length === 1 ? leaders[0]!.name : null;
    if (leader !== null && leader !== this.leader) {
      const fault = this.leaderFault;
      if (fault !== null && fault.leader !== leader) {
        const failoverMs = Date.now() - fault.atMs;
        this.add('launcher', {
          kind: 'failover',
          text: `${leader} leads, ${(failoverMs / 1000).toFixed(2)} s after ${fault.leader} was ${fault.what}`,
          subject: leader,
          failoverMs,
        });
        this.leaderFault = null;
      }
      this.leader = leader;
    }
  }

  private async pollMember(m: LocalMember): Promise<void> {
    const cursor = this.cursors.get(m.name);
    let state: MemberDashboardState;
    try {
      state = await adminRequest<MemberDashboardState>(
        m.spec.admin,
        'GET',
        `/dashboard/api/state?after=${cursor?.seq ?? 0}`,
        undefined,
        POLL_TIMEOUT_MS,
      );
    } catch {
      this.latest.delete(m.name);
      return;
    }
    let after = cursor?.seq ?? 0;
    if (cursor !== undefined && cursor.epochMs !== state.events.epochMs) {
      // A restarted member: a new sequence, and its first page was asked with the old cursor.
      after = 0;
      const all = await adminRequest<MemberDashboardState>(
        m.spec.admin,
        'GET',
        '/dashboard/api/state?after=0',
        undefined,
        POLL_TIMEOUT_MS,
      ).catch(() => null);
      if (all === null) return;
      state = all;
    }
    for (const e of state.events.items) {
      if (e.seq <= after) continue;
      after = e.seq;
      const { seq: _seq, ...rest } = e;
      if (this.seenElsewhere(rest)) continue;
      this.add(m.name, rest);
    }
    this.cursors.set(m.name, { epochMs: state.events.epochMs, seq: after });
    this.latest.set(m.name, { ...state, events: { epochMs: state.events.epochMs, items: [] } });
  }

  /**
   * Every member logs the same configuration change and the same new leader: the timeline keeps
   * the first report (a leader's failover time as the first member to see it measured it).
   */
  private seenElsewhere(e: Omit<TimelineEvent, 'seq' | 'source'>): boolean {
    const shared = ['leader', 'promotion', 'demotion', 'membership'];
    if (!shared.includes(e.kind)) return false;
    const key = e.kind === 'leader' ? `leader ${e.subject} ${e.term}` : `${e.kind} ${e.text}`;
    const now = Date.now();
    for (const [k, atMs] of this.recentShared) {
      if (now - atMs > SHARED_EVENT_WINDOW_MS) this.recentShared.delete(k);
    }
    if (this.recentShared.has(key)) return true;
    this.recentShared.set(key, now);
    return false;
  }

  private add(
    source: string,
    e: Omit<TimelineEvent, 'seq' | 'source' | 'atMs'> & { atMs?: number },
  ) {
    this.timeline.push({ seq: this.nextSeq++, source, atMs: e.atMs ?? Date.now(), ...e });
    if (this.timeline.length > TIMELINE_MAX)
      this.timeline.splice(0, this.timeline.length - TIMELINE_MAX);
  }

  private async memberAction(name: string, action: string): Promise<string> {
    const m = this.cluster.member(name, false);
    if (m === null) throw withStatus(404, `no member ${name}`);
    if (!(ACTIONS as readonly string[]).includes(action)) {
      throw withStatus(404, `unknown action ${action}: expected ${ACTIONS.join(', ')}`);
    }
    const wasLeader = this.leader === name;
    const text = await this.act(m, action as Action);
    this.add('launcher', { kind: 'fault', text: `${name}: ${text}`, subject: name });
    if (wasLeader && ['kill', 'pause', 'partition'].includes(action)) {
      this.leaderFault = { leader: name, atMs: Date.now(), what: pastTense(action as Action) };
    }
    return text;
  }

  private async act(m: LocalMember, action: Action): Promise<string> {
    switch (action) {
      case 'kill':
        if (!m.running) throw withStatus(409, `${m.name} is not running`);
        await m.kill();
        return 'killed (SIGKILL)';
      case 'pause':
        if (m.state !== 'running') throw withStatus(409, `${m.name} is not running`);
        m.pause();
        return 'paused (SIGSTOP)';
      case 'resume':
        if (m.state !== 'paused') throw withStatus(409, `${m.name} is not paused`);
        m.resume();
        return 'resumed (SIGCONT)';
      case 'restart':
        if (m.running) await m.stop();
        this.partitioned.delete(m.name); // a restarted member starts healed
        m.spawn();
        return 'restarted';
      case 'partition':
        await this.partition(m, true);
        return 'partitioned from every other member';
      case 'heal':
        await this.partition(m, false);
        return 'healed';
    }
  }

  /** Both directions: `m` drops what it sends to the others, and they drop what they send it. */
  private async partition(m: LocalMember, cut: boolean): Promise<void> {
    const others = this.cluster.members.filter((o) => o !== m && o.state === 'running');
    if (m.state !== 'running') throw withStatus(409, `${m.name} is not running`);
    const rule = (peer: string) => ({ links: [{ peer, dropRate: cut ? 1 : 0 }] });
    await adminRequest(m.spec.admin, 'POST', '/faults', {
      links: others.map((o) => ({ peer: o.name, dropRate: cut ? 1 : 0 })),
    });
    await Promise.all(
      others.map((o) =>
        adminRequest(o.spec.admin, 'POST', '/faults', rule(m.name)).catch(() => {}),
      ),
    );
    if (cut) this.partitioned.add(m.name);
    else this.partitioned.delete(m.name);
  }

  private async startLoad(secondsValue: unknown): Promise<string> {
    const seconds = secondsValue === undefined ? LOAD_SECONDS_DEFAULT : Number(secondsValue);
    if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > LOAD_SECONDS_MAX) {
      throw withStatus(400, `seconds: expected an integer in [1, ${LOAD_SECONDS_MAX}]`);
    }
    if (this.load !== null && this.load.clients > 0) {
      throw withStatus(409, 'a load is already running');
    }
    const load: Load = {
      untilMs: Date.now() + seconds * 1000,
      ops: 0,
      errors: 0,
      stop: false,
      clients: LOAD_CLIENTS,
    };
    this.load = load;
    this.add('launcher', { kind: 'load', text: `load started for ${seconds} s` });
    const clients = Array.from({ length: LOAD_CLIENTS }, (_, i) =>
      this.loadClient(load, i).finally(() => {
        load.clients--;
      }),
    );
    void Promise.all(clients).then(() => {
      this.add('launcher', {
        kind: 'load',
        text: `load ended: ${load.ops} operations, ${load.errors} failed`,
      });
    });
    return `load for ${seconds} s`;
  }

  /** One client: puts and gets (one write in four) on the running members in turn. */
  private async loadClient(load: Load, index: number): Promise<void> {
    const clients = new Map<string, KvClient>();
    try {
      for (let i = 0; !load.stop && Date.now() < load.untilMs; i++) {
        const serving = this.cluster.members.filter(
          (m) => m.state === 'running' && m.spec.role !== 'standby',
        );
        const m = serving[(index + i) % Math.max(1, serving.length)];
        if (m === undefined) {
          await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
          continue;
        }
        let client = clients.get(m.name);
        if (client === undefined) {
          client = new KvClient(m.spec.client);
          clients.set(m.name, client);
        }
        const key = `load/${String((index * 7919 + i) % LOAD_KEYS).padStart(3, '0')}`;
        try {
          if (i % 4 === 0) await client.put(key, `v${i} from client ${index}`, LOAD_OP_TIMEOUT_MS);
          else await client.get(key, LOAD_OP_TIMEOUT_MS);
          load.ops++;
        } catch {
          load.errors++;
          await new Promise((r) => setTimeout(r, 50)); // no busy loop while a member is down
        }
      }
    } finally {
      for (const c of clients.values()) c.close();
    }
  }

  /** Sends a member op to each running member's admin endpoint until the leader takes it. */
  private async memberOp(opValue: unknown, nameValue: unknown): Promise<string> {
    if (typeof opValue !== 'string' || !(OPS as readonly string[]).includes(opValue)) {
      throw withStatus(400, `op: expected one of ${OPS.join(', ')}`);
    }
    if (typeof nameValue !== 'string' || this.cluster.member(nameValue, false) === null) {
      throw withStatus(400, `name: expected a member's name, got ${String(nameValue)}`);
    }
    const path = opValue === 'move-leader' ? '/leader/move' : `/member/${opValue}`;
    const problems: string[] = [];
    for (const m of this.cluster.members.filter((x) => x.state === 'running')) {
      try {
        const r = await adminRequest<{ reason?: string }>(
          m.spec.admin,
          'POST',
          path,
          { name: nameValue },
          OP_TIMEOUT_MS,
        );
        const text = `${opValue} ${nameValue}: ${r.reason ?? 'done'}`;
        this.add('launcher', { kind: 'operator', text, subject: nameValue });
        return text;
      } catch (error) {
        const message = (error as Error).message;
        if (message.includes('HTTP 421')) continue; // a follower
        if (message.includes('HTTP 409')) throw withStatus(409, refusal(message));
        problems.push(`${m.name}: ${message}`);
      }
    }
    throw withStatus(
      503,
      `no leader took it${problems.length > 0 ? `: ${problems.join('; ')}` : ''}`,
    );
  }
}

function pastTense(action: Action): string {
  return action === 'kill' ? 'killed' : action === 'pause' ? 'paused' : 'partitioned';
}

/** The `error` field of an admin refusal (`… HTTP 409: {"error":…}`). */
function refusal(message: string): string {
  const json = message.slice(message.indexOf('{'));
  try {
    return (JSON.parse(json) as { error?: string }).error ?? message;
  } catch {
    return message;
  }
}

function withStatus(status: number, message: string): Error & { status: number } {
  return Object.assign(new Error(message), { status });
}

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > BODY_BYTES_MAX) {
        reject(new Error(`request body larger than ${BODY_BYTES_MAX} bytes`));
        req.destroy();
      }
    });
    req.on('end', () => {
      if (text.trim() === '') {
        resolve({});
        return;
      }
      try {
        const value = JSON.parse(text) as unknown;
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          reject(new Error('expected a JSON object'));
          return;
        }
        resolve(value as Record<string, unknown>);
      } catch {
        reject(new Error('the request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}
