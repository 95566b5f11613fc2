/**
 * The dashboard's routes on the admin port (src/api/admin.ts routes /dashboard… here):
 *
 *   GET /dashboard/                 the page (dist/dashboard, built by `npm run build`)
 *   GET /dashboard/api/state?after=N   {status, stats, events, devControls} (events after seq N)
 *   GET /dashboard/api/stream       the same as server-sent events, every STREAM_INTERVAL_MS
 *   GET /dashboard/api/kv?prefix=P&limit=N   keys under a prefix, as this member has them
 *   GET /dashboard/api/history?key=K           the key's revisions, newest first
 *
 * Reads of keys are serializable (this member's applied state): the page says whose view it
 * shows. Files are served from one directory only, by an allowlisted path.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import {
  rangeRequest as kvRangeRequest,
  type RangeRequest,
  type RangeResponse,
} from '../kv/api-types.js';
import type { KeyValue } from '../kv/types.js';
import type { RequestOptions, WithHeader } from '../server/contract.js';
import type { LoggedEvent } from '../server/event-log.js';
import { prefixEnd } from '../util/bytes.js';
import type { LiveSample } from './live-stats.js';

export const STREAM_INTERVAL_MS = 500;
/** Open event streams at once; past it a new one is refused with 503. */
export const STREAMS_MAX = 32;
export const KV_LIMIT_DEFAULT = 100;
export const KV_LIMIT_MAX = 1000;
/** Bytes of each value shown in a listing; the history shows up to VALUE_BYTES_MAX. */
export const VALUE_PREVIEW_BYTES = 256;
export const VALUE_BYTES_MAX = 64 * 1024;
/** Revisions of one key walked back, at most. */
export const HISTORY_MAX = 20;
/** A query parameter (prefix, key) longer than this is refused. */
export const KEY_PARAM_BYTES_MAX = 4096;
/** A static file larger than this is not served (the built page is far smaller). */
const STATIC_FILE_BYTES_MAX = 8 * 1024 * 1024;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

export interface DashboardSources {
  /** The built page's directory. */
  readonly staticDir: string;
  readonly status: () => unknown;
  readonly stats: () => LiveSample;
  readonly events: {
    readonly epochMs: number;
    since(afterSeq: number): readonly LoggedEvent[];
  };
  readonly range: (req: RangeRequest, opts: RequestOptions) => Promise<WithHeader<RangeResponse>>;
  /** `tandem dev`'s controls (http://host:port), null outside `tandem dev`. */
  readonly devControls: string | null;
}

export interface Dashboard {
  /** True when the request was for the dashboard (and is answered). */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Ends every open stream (the admin server closes). */
  close(): void;
}

const READ: RequestOptions = { consistency: { kind: 'serializable' }, ack: 'quorum' };

export function dashboard(s: DashboardSources): Dashboard {
  const streams = new Set<ServerResponse>();
  const state = (after: number) => ({
    status: s.status(),
    stats: s.stats(),
    events: { epochMs: s.events.epochMs, items: s.events.since(after) },
    devControls: s.devControls,
  });

  const stream = (req: IncomingMessage, res: ServerResponse, url: URL): void => {
    if (streams.size >= STREAMS_MAX) {
      reply(res, 503, { error: `more than ${STREAMS_MAX} dashboard streams`, code: 'BUSY' });
      return;
    }
    let after = seqParam(url.searchParams.get('after') ?? req.headers['last-event-id']);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    streams.add(res);
    const push = (): void => {
      const body = state(after);
      const last = body.events.items.at(-1);
      if (last !== undefined) after = last.seq;
      res.write(`id: ${after}\ndata: ${JSON.stringify(body)}\n\n`);
    };
    push();
    const timer = setInterval(push, STREAM_INTERVAL_MS);
    res.on('close', () => {
      clearInterval(timer);
      streams.delete(res);
    });
  };

  const handle = (req: IncomingMessage, res: ServerResponse): boolean => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(res, 405, { error: `${req.method} not allowed here`, code: 'METHOD' });
      return true;
    }
    if (path === '/dashboard') {
      res.writeHead(302, { location: '/dashboard/' });
      res.end();
      return true;
    }
    switch (path) {
      case '/dashboard/api/state':
        reply(res, 200, state(seqParam(url.searchParams.get('after'))));
        return true;
      case '/dashboard/api/stream':
        stream(req, res, url);
        return true;
      case '/dashboard/api/kv':
        answer(res, () => listKeys(s, url));
        return true;
      case '/dashboard/api/history':
        answer(res, () => keyHistory(s, url));
        return true;
    }
    serveFile(s.staticDir, path.slice('/dashboard/'.length) || 'index.html', res);
    return true;
  };

  return {
    handle,
    close: () => {
      for (const res of streams) res.end();
      streams.clear();
    },
  };
}

function seqParam(value: unknown): number {
  const n = Number(value);
  return typeof value === 'string' && Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

class BadRequest extends Error {}

/** Runs `work`; replies 200 with its value, 400 on a BadRequest, 500 on anything else. */
function answer(res: ServerResponse, work: () => Promise<unknown>): void {
  work().then(
    (value) => reply(res, 200, value),
    (error: Error & { code?: string }) =>
      error instanceof BadRequest
        ? reply(res, 400, { error: error.message, code: 'BAD_REQUEST' })
        : reply(res, 500, { error: error.message, code: error.code ?? 'ERROR' }),
  );
}

function keyParam(url: URL, name: string, required: boolean): Uint8Array {
  const value = url.searchParams.get(name) ?? '';
  if (required && value === '') throw new BadRequest(`expected a query parameter ${name}`);
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > KEY_PARAM_BYTES_MAX) {
    throw new BadRequest(`${name} longer than ${KEY_PARAM_BYTES_MAX} bytes`);
  }
  return bytes;
}

function rangeRequest(key: Uint8Array, rangeEnd: Uint8Array, limit: number, revision: number) {
  return kvRangeRequest({ key, rangeEnd, limit, revision, serializable: true });
}

async function listKeys(s: DashboardSources, url: URL) {
  const prefix = keyParam(url, 'prefix', false);
  const limitText = url.searchParams.get('limit');
  const limit = limitText === null ? KV_LIMIT_DEFAULT : Number(limitText);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > KV_LIMIT_MAX) {
    throw new BadRequest(`limit: expected an integer in [1, ${KV_LIMIT_MAX}], got ${limitText}`);
  }
  const key = prefix.length === 0 ? new Uint8Array([0]) : prefix;
  const r = await s.range(rangeRequest(key, prefixEnd(prefix), limit, 0), READ);
  return {
    revision: r.response.header.revision,
    more: r.response.more,
    kvs: r.response.kvs.map((kv) => shownKv(kv, VALUE_PREVIEW_BYTES)),
  };
}

/**
 * The key's versions, newest first: each found by reading the key at the revision before the
 * previous one's modification. Ends at the first revision before its first creation that holds
 * nothing, at a compacted revision, or after HISTORY_MAX.
 */
async function keyHistory(s: DashboardSources, url: URL) {
  const key = keyParam(url, 'key', true);
  const versions: ReturnType<typeof shownKv>[] = [];
  let revision = 0;
  let compactedBefore: number | null = null;
  for (let step = 0; step < HISTORY_MAX; step++) {
    let kv: KeyValue | undefined;
    try {
      const r = await s.range(rangeRequest(key, new Uint8Array(0), 1, revision), READ);
      kv = r.response.kvs[0];
    } catch (error) {
      if ((error as { code?: string }).code !== 'COMPACTED') throw error;
      compactedBefore = revision + 1;
      break;
    }
    if (kv === undefined) break;
    versions.push(shownKv(kv, VALUE_BYTES_MAX));
    revision = kv.modRevision - 1;
    if (revision < 1) break;
  }
  return { key: Buffer.from(key).toString('utf8'), versions, compactedBefore };
}

function shownKv(kv: KeyValue, valueBytesMax: number) {
  const value = Buffer.from(kv.value.subarray(0, valueBytesMax));
  return {
    key: Buffer.from(kv.key).toString('utf8'),
    value: value.toString('utf8'),
    valueBytes: kv.value.length,
    truncated: kv.value.length > valueBytesMax,
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
    lease: String(kv.lease),
  };
}

function serveFile(dir: string, relative: string, res: ServerResponse): void {
  const clean = normalize(relative);
  const allowed =
    /^[A-Za-z0-9._/-]+$/.test(relative) && !clean.startsWith('..') && !clean.includes(`${sep}..`);
  if (!allowed) {
    reply(res, 404, { error: 'not found' });
    return;
  }
  const file = join(dir, clean);
  readFile(file).then(
    (data) => {
      if (data.length > STATIC_FILE_BYTES_MAX) {
        reply(res, 500, { error: `${relative} is larger than expected`, code: 'TOO_LARGE' });
        return;
      }
      const hashed = relative.startsWith('assets/');
      res.writeHead(200, {
        'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
        'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
      });
      res.end(data);
    },
    (error: NodeJS.ErrnoException) => {
      if (relative === 'index.html' && error.code === 'ENOENT') {
        reply(res, 404, {
          error: `the dashboard is not built (${dir} is missing): run npm run build`,
          code: 'NOT_BUILT',
        });
        return;
      }
      reply(res, 404, { error: 'not found' });
    },
  );
}

function reply(res: ServerResponse, code: number, value: unknown): void {
  if (res.headersSent) return;
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}
