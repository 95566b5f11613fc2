/**
 * The admin HTTP endpoint (`listen.admin`): what operators and tools read besides the etcd API.
 *
 *   GET  /health                  {"health":"true"} while the process serves (liveness)
 *   GET  /ready                   200 {"ready":true} while a client request sent here is
 *                                 answered: a leader is known, and the member serves clients
 *                                 or knows one that does to forward to (a standby, or a member
 *                                 still confirming its role after a start);
 *                                 503 {"ready":false,"reason"} otherwise (readiness)
 *   GET  /status, /cluster        the member's status JSON (src/server/status.ts)
 *   GET  /metrics                 Prometheus text (src/server/metrics.ts)
 *   POST /member/promote|demote|standby {"name": "n4"}
 *                                 an operator's override, planned and proposed by the leader:
 *                                 200 {"ok":true,"reason"} once applied; 409 {"error","code"}
 *                                 with the policy's refusal; 421 {"code":"NOT_LEADER"} on a
 *                                 follower (the CLI tries the next endpoint)
 *   POST /leader/move {"name": "n2"}  etcd's MoveLeader: the leader hands leadership to that
 *                                 voter; answers as /member/… do
 *   GET  /dashboard/…             the dashboard and its data (src/api/dashboard.ts)
 *
 * With etcd auth enabled, POST /member/…, POST /leader/move and the dashboard's key routes
 * (/dashboard/api/kv, /dashboard/api/history) need the root user's token in `Authorization`
 * (as the JSON gateway takes it; a `Bearer ` prefix is accepted): else 401 with etcd's reason.
 *
 * Anything else is 404. A request body larger than its limit (by its Content-Length, or by what
 * arrives) is refused with 413, not read further, and the connection is closed: a client cannot
 * make the member buffer more than the limit, nor keep streaming into a socket it drains.
 * `/status` says whether test-mode fault injection is on (`testMode.faultInjection`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { ManualOp } from '../cluster/policy.js';
import type { Dashboard } from './dashboard.js';

/** A POST /member/<op> body larger than this is refused. */
export const MEMBER_OP_BODY_BYTES_MAX = 4096;
const MANUAL_OPS: readonly ManualOp[] = ['promote', 'demote', 'standby'];

export interface AdminOptions {
  /** `host:port` (IPv6 as `[::1]:port`); port 0 picks a free one. */
  readonly listen: { readonly host: string; readonly port: number };
  readonly status: () => unknown;
  /** Whether the member can answer clients now, and why not (GET /ready). */
  readonly ready: () => { readonly ready: boolean; readonly reason: string };
  readonly metrics: { readonly contentType: string; scrape(): Promise<string> };
  readonly memberOp: (op: ManualOp, name: string) => Promise<string>;
  /** Hands leadership to the voter named; resolves with what happened. */
  readonly moveLeader?: (name: string) => Promise<string>;
  readonly dashboard?: Dashboard;
  /** Tried first (test-mode fault injection): true when it answered the request. */
  readonly extra?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /**
   * With etcd auth enabled, what acts (POST) or reads keys (the dashboard's key browser) needs
   * the root user: resolves for the `Authorization` header's token when it is root's (or auth is
   * off), rejects with the reason otherwise (answered 401).
   */
  readonly authorize?: (token: string | undefined) => Promise<void>;
  /** HTTPS (PEM); with `ca`, callers must present a certificate it signed. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
}

export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startAdminServer(o: AdminOptions): Promise<AdminServer> {
  const handle = (req: IncomingMessage, res: ServerResponse): void => route(o, req, res);
  const tls = o.tls;
  const server: Server =
    tls === undefined
      ? createServer(handle)
      : createHttpsServer(
          {
            cert: tls.cert,
            key: tls.key,
            minVersion: 'TLSv1.2',
            ...(tls.ca === undefined
              ? {}
              : { ca: tls.ca, requestCert: true, rejectUnauthorized: true }),
          },
          handle,
        );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => resolve());
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () => {
      o.dashboard?.close();
      return closeServer(server);
    },
  };
}

/** Paths that act on the cluster or read keys: root only when etcd auth is enabled. */
const GUARDED_PATH = /^\/(member\/[a-z]+|leader\/move|dashboard\/api\/(kv|history))$/;

function route(o: AdminOptions, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '').split('?')[0] ?? '';
  if (o.authorize !== undefined && GUARDED_PATH.test(path)) {
    const header = req.headers.authorization;
    const token = header?.replace(/^Bearer\s+/i, '');
    o.authorize(token).then(
      () => routeAuthorized(o, req, res),
      (error: Error & { code?: string }) => {
        req.resume(); // the body is not read: drain what arrives, bounded by the socket's life
        // Said in the answer, so that a keep-alive client does not send its next request on a
        // connection about to close ("other side closed": seen in CI, undici).
        res.setHeader('connection', 'close');
        res.once('finish', () => req.socket.destroy());
        reply(res, 401, {
          error: `${error.message} (with auth enabled, ${path} needs the root user's token in the Authorization header)`,
          code: error.code ?? 'UNAUTHORIZED',
        });
      },
    );
    return;
  }
  routeAuthorized(o, req, res);
}

function routeAuthorized(o: AdminOptions, req: IncomingMessage, res: ServerResponse): void {
  if (o.extra?.(req, res) === true) return;
  if (o.dashboard?.handle(req, res) === true) return;
  const path = (req.url ?? '').split('?')[0];
  if (req.method === 'POST' && path === '/leader/move' && o.moveLeader !== undefined) {
    const move = o.moveLeader;
    handleNamedOp(req, res, (name) => move(name));
    return;
  }
  const opMatch = /^\/member\/([a-z]+)$/.exec(path ?? '');
  if (req.method === 'POST' && opMatch !== null) {
    const op = opMatch[1] as ManualOp;
    if (MANUAL_OPS.includes(op)) {
      handleNamedOp(req, res, (name) => o.memberOp(op, name));
      return;
    }
  }
  if (path === '/health') {
    reply(res, 200, { health: 'true' });
    return;
  }
  if (path === '/ready') {
    const r = o.ready();
    reply(res, r.ready ? 200 : 503, r.ready ? { ready: true } : { ready: false, reason: r.reason });
    return;
  }
  if (req.method === 'GET' && path === '/metrics') {
    o.metrics.scrape().then(
      (text) => {
        res.writeHead(200, { 'content-type': o.metrics.contentType });
        res.end(text);
      },
      (error: Error) => reply(res, 500, { error: `metrics: ${error.message}`, code: 'METRICS' }),
    );
    return;
  }
  if (path === '/status' || path === '/cluster') {
    reply(res, 200, o.status());
    return;
  }
  reply(res, 404, { error: 'not found' });
}

/** A POST whose JSON body names a member: `run(name)`'s outcome as 200, 409 or 421. */
function handleNamedOp(
  req: IncomingMessage,
  res: ServerResponse,
  run: (name: string) => Promise<string>,
): void {
  readBoundedBody(req, res, MEMBER_OP_BODY_BYTES_MAX).then(
    (body) => {
      if (body === null) return; // answered 413
      let name: unknown;
      try {
        name = (JSON.parse(body) as { name?: unknown }).name;
      } catch {
        name = undefined;
      }
      if (typeof name !== 'string' || name === '') {
        reply(res, 400, {
          error: 'expected a JSON body {"name": "<member name>"}',
          code: 'BAD_REQUEST',
        });
        return;
      }
      run(name).then(
        (reason) => reply(res, 200, { ok: true, reason }),
        (error: Error & { code?: string }) => {
          const code = error.code ?? 'ERROR';
          reply(res, code === 'NOT_LEADER' ? 421 : 409, { error: error.message, code });
        },
      );
    },
    () => reply(res, 400, { error: 'the request body could not be read', code: 'BAD_REQUEST' }),
  );
}

/**
 * The body as text, or null when it is larger than `bytesMax`: then this has answered 413 and
 * closes the connection once the answer is written (nothing past the limit is read or kept).
 */
export function readBoundedBody(
  req: IncomingMessage,
  res: ServerResponse,
  bytesMax: number,
): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): void => {
      req.removeAllListeners('data');
      req.pause();
      res.once('finish', () => req.socket.destroy());
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
      res.end(
        JSON.stringify({ error: `request body larger than ${bytesMax} bytes`, code: 'TOO_LARGE' }),
      );
      resolve(null);
    };
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > bytesMax) {
      tooLarge();
      return;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > bytesMax) {
        chunks.length = 0;
        tooLarge();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (bytes <= bytesMax) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

/** A JSON answer (once: nothing if headers were already sent). */
export function reply(res: ServerResponse, code: number, value: unknown): void {
  if (res.headersSent) return;
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

/** Closes an HTTP server and every connection it still holds. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
