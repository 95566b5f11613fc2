/**
 * Small helpers for running members on this machine (local-cluster.ts, the chaos runner, the
 * integration tests, the benchmarks): free ports, sleeping, bounded polling, and one bounded JSON
 * request to a member's admin endpoint.
 */
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type Server } from 'node:net';
import { assert } from '../util/assert.js';

export const ADMIN_REQUEST_TIMEOUT_MS = 1_000;
export const POLL_INTERVAL_MS = 100;
/** Polls of one wait, whatever its timeout: bounds the loop by count as well as by time. */
const POLL_ROUNDS_MAX = 100_000;
/** Ports asked for at once (a 7-member cluster needs 21). */
export const FREE_PORTS_MAX = 256;

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Where listen ports are picked: below the kernel's ephemeral range (Linux:
 * /proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default), from which the local ports of
 * outgoing connections come. A port picked from that range could be taken by any connection
 * between the pick and the member's bind (seen in CI: EADDRINUSE at a member's start); below it,
 * only another listener picking at random could. Null: no such range known (port 0 then).
 */
export function listenPortRange(): { readonly min: number; readonly max: number } | null {
  let ephemeralLow: number;
  try {
    ephemeralLow = Number(readFileSync(EPHEMERAL_RANGE_FILE, 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return null;
  }
  if (!Number.isInteger(ephemeralLow) || ephemeralLow <= LISTEN_PORT_MIN + 1024) return null;
  return { min: LISTEN_PORT_MIN, max: ephemeralLow - 1 };
}

const EPHEMERAL_RANGE_FILE = '/proc/sys/net/ipv4/ip_local_port_range';
/** The lowest listen port picked (well above the well-known and registered-service ports in use). */
const LISTEN_PORT_MIN = 10_000;
/** Random picks tried per port wanted before giving up (each a bind that failed). */
const PORT_PICKS_PER_PORT_MAX = 64;

/** Listens on `port` of `host` (0: any); false when it is taken. */
function tryListen(server: Server, port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      error.code === 'EADDRINUSE' || error.code === 'EACCES' ? resolve(false) : reject(error),
    );
    server.listen(port, host, () => resolve(true));
  });
}

/**
 * `count` distinct ports of `host` that were free a moment ago: picked at random below the
 * ephemeral range (listenPortRange), all bound at once (so they differ), then released. Another
 * listener may take one in between: a small race, accepted.
 */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  assert(Number.isInteger(count) && count >= 1 && count <= FREE_PORTS_MAX, 'port count in range');
  const range = listenPortRange();
  const servers: Server[] = [];
  try {
    for (let picks = 0; servers.length < count; picks++) {
      if (picks >= count * PORT_PICKS_PER_PORT_MAX) {
        throw new Error(`no ${count} free ports on ${host} in ${picks} picks`);
      }
      const port = range === null ? 0 : randomInt(range.min, range.max + 1);
      const server = createServer();
      if (await tryListen(server, port, host)) servers.push(server);
      else server.close();
    }
    return servers.map((server) => (server.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

/** One port of 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/** An admin endpoint over HTTPS (config `tls.admin`): the CA to trust, a client certificate. */
export interface AdminClientTls {
  /** Absent: the system's CAs. */
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** An admin answer larger than this is no answer (bounds what a caller buffers). */
export const ADMIN_RESPONSE_BYTES_MAX = 8 * 1024 * 1024;

/** What an admin endpoint answered: the HTTP status and the body. */
export interface AdminAnswer {
  readonly status: number;
  readonly text: string;
}

/**
 * One HTTP request to an admin endpoint (`host:port`), bounded by `timeoutMs` from start to end
 * and by ADMIN_RESPONSE_BYTES_MAX; resolves with whatever status it answered. With `tls`, HTTPS.
 */
export function adminExchange(
  address: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
  timeoutMs = ADMIN_REQUEST_TIMEOUT_MS,
  tls?: AdminClientTls,
  /** With etcd auth enabled, acting needs the root user's token (admin.ts). */
  token?: string,
): Promise<AdminAnswer> {
  return new Promise((resolveRequest, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {
      ...(payload !== undefined && { 'content-type': 'application/json' }),
      ...(token !== undefined && { authorization: token }),
    };
    const req = (tls === undefined ? request : httpsRequest)(
      `${tls === undefined ? 'http' : 'https'}://${address}${path}`,
      { method, headers, ...tls },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
          if (text.length > ADMIN_RESPONSE_BYTES_MAX) {
            req.destroy(
              new Error(`${method} ${path}: answer over ${ADMIN_RESPONSE_BYTES_MAX} bytes`),
            );
          }
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolveRequest({ status: res.statusCode ?? 500, text });
        });
      },
    );
    const timer = setTimeout(
      () => req.destroy(new Error(`${method} ${address}${path} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(payload);
  });
}

/**
 * One request to an admin endpoint, as adminExchange; resolves with the JSON body, rejects on a
 * status of 300 or more (the body in the message).
 */
export async function adminRequest<T>(
  address: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
  timeoutMs = ADMIN_REQUEST_TIMEOUT_MS,
  tls?: AdminClientTls,
): Promise<T> {
  const answer = await adminExchange(address, method, path, body, timeoutMs, tls);
  if (answer.status >= 300) {
    throw new Error(`${method} ${path}: HTTP ${answer.status}: ${answer.text}`);
  }
  return JSON.parse(answer.text) as T;
}

/** A wait that cannot succeed any more (a member it needs has exited): `waitFor` rethrows it. */
export class FatalWait extends Error {
  readonly code = 'WAIT_FATAL';
}

export interface WaitOptions {
  readonly intervalMs?: number;
  /** Abort: the wait rejects at once. */
  readonly signal?: AbortSignal;
  /** Appended to the timeout message (e.g. the members' log tails). */
  readonly detail?: () => string;
}

/**
 * Polls `check` until it returns a value other than null or undefined, and returns that value.
 * An error thrown by `check` counts as "not yet" (the last one is named on timeout), except a
 * FatalWait, which ends the wait at once. Throws `timed out after … waiting for <what>`.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | null | undefined> | T | null | undefined,
  options: WaitOptions = {},
): Promise<T> {
  const intervalMs = options.intervalMs ?? POLL_INTERVAL_MS;
  assert(timeoutMs >= 0 && intervalMs > 0, 'a wait has a bound and a positive interval');
  const deadline = Date.now() + timeoutMs;
  let last: Error | null = null;
  for (let round = 0; round < POLL_ROUNDS_MAX; round++) {
    if (options.signal?.aborted === true) throw new Error(`aborted waiting for ${what}`);
    try {
      const value = await check();
      if (value !== null && value !== undefined) return value;
    } catch (error) {
      if (error instanceof FatalWait) throw error;
      last = error as Error;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())), options.signal);
  }
  const why = last === null ? '' : `: last error ${last.message}`;
  const detail = options.detail === undefined ? '' : `\n${options.detail()}`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}${detail}`);
}
