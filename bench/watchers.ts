/**
 * Many watchers on one key, for bench/scale.ts: watcher processes (this file, forked under tsx),
 * each opening its share of the watchers as separate Watch streams (one watcher per stream, as
 * separate clients have) over a bounded number of HTTP/2 connections, round-robin over the
 * cluster's endpoints, with the same raw gRPC and hand-written protobuf as the load generator.
 *
 *   const pool = await WatcherPool.start(endpoints, key, 10_000, { processes: 2 });
 *   ... put to `key` with stampValue() values ...
 *   const report = await pool.report();   // events, revisions, lags
 *   await pool.close();
 *
 * A put's value starts with its send time (wall clock, ms): a watcher's lag for an event is its
 * arrival time minus that (same machine, same clock). Children exit when the parent disconnects
 * (or dies: IPC closes); close() stops them by PID. Every wait is bounded.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';
import { stopChild } from '../src/cli/local-process.js';
import { forEachField } from './load.js';

export const WATCHERS_MAX = 100_000;
export const WATCHER_PROCESSES_MAX = 8;
export const STREAMS_PER_CONNECTION_DEFAULT = 100;
export const STREAMS_PER_CONNECTION_MAX = 1000;
const OPEN_TIMEOUT_MS = 120_000;
const REPLY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 2000;
/** Lags are recorded in microseconds up to this (5 minutes); longer is clamped. */
const LAG_US_MAX = 300_000_000;
/** Watch creations sent before waiting for their acknowledgements (bounded burst). */
const CREATE_BATCH = 500;

// ---------------------------------------------------------------------------------------------
// Protobuf (proto/rpc.proto, mvccpb/kv.proto), the fields used:
//   WatchRequest       { oneof request_union { WatchCreateRequest create_request = 1; ... } }
//   WatchCreateRequest { bytes key = 1; ... }
//   WatchResponse      { ResponseHeader header = 1; int64 watch_id = 2; bool created = 3;
//                        bool canceled = 4; string cancel_reason = 6; repeated Event events = 11; }
//   Event              { EventType type = 1; KeyValue kv = 2; }
//   KeyValue           { bytes key = 1; int64 create_revision = 2; int64 mod_revision = 3;
//                        int64 version = 4; bytes value = 5; }
//   PutResponse / ResponseHeader { ResponseHeader header = 1 } / { ...; int64 revision = 3; }

/** A WatchRequest creating a watcher on exactly `key`, from the next revision. */
export function encodeWatchCreate(key: Uint8Array): Buffer {
  if (key.length >= 0x80) throw new Error('encodeWatchCreate: keys under 128 bytes');
  const create = Buffer.allocUnsafe(2 + key.length);
  create[0] = 0x0a; // WatchCreateRequest.key
  create[1] = key.length;
  create.set(key, 2);
  const request = Buffer.allocUnsafe(2 + create.length);
  request[0] = 0x0a; // WatchRequest.create_request
  request[1] = create.length;
  request.set(create, 2);
  return request;
}

export interface WatchEvent {
  readonly modRevision: number;
  readonly value: Uint8Array;
}

export interface DecodedWatchResponse {
  readonly watchId: number;
  readonly created: boolean;
  readonly canceled: boolean;
  readonly cancelReason: string;
  readonly events: WatchEvent[];
}

export function decodeWatchResponse(buf: Uint8Array): DecodedWatchResponse {
  let watchId = 0;
  let created = false;
  let canceled = false;
  let cancelReason = '';
  const events: WatchEvent[] = [];
  forEachField(buf, 0, buf.length, (field, varint, from, to) => {
    if (field === 2) watchId = varint;
    else if (field === 3) created = varint !== 0;
    else if (field === 4) canceled = varint !== 0;
    else if (field === 6) cancelReason = Buffer.from(buf.subarray(from, to)).toString('utf8');
    else if (field === 11) {
      let modRevision = 0;
      let value: Uint8Array = new Uint8Array(0);
      forEachField(buf, from, to, (eventField, _v, kvFrom, kvTo) => {
        if (eventField !== 2) return;
        forEachField(buf, kvFrom, kvTo, (kvField, kvVarint, vFrom, vTo) => {
          if (kvField === 3) modRevision = kvVarint;
          else if (kvField === 5) value = buf.subarray(vFrom, vTo);
        });
      });
      events.push({ modRevision, value });
    }
  });
  return { watchId, created, canceled, cancelReason, events };
}

/** The header revision of a PutResponse (or any response whose field 1 is a ResponseHeader). */
export function responseRevision(buf: Uint8Array): number {
  let revision = 0;
  forEachField(buf, 0, buf.length, (field, _v, from, to) => {
    if (field !== 1) return;
    forEachField(buf, from, to, (headerField, varint) => {
      if (headerField === 3) revision = varint;
    });
  });
  return revision;
}

/** A value of `bytes` bytes whose first characters are the wall-clock time now, in ms. */
export function stampValue(bytes: number, nowMs: number = wallMs()): Buffer {
  const stamp = `${nowMs.toFixed(3)} `;
  const value = Buffer.alloc(Math.max(bytes, stamp.length), 0x78);
  value.write(stamp, 0, 'latin1');
  return value;
}

/** The send time stamped in a value by stampValue, or NaN. */
export function stampOf(value: Uint8Array): number {
  const end = value.indexOf(0x20);
  return end <= 0 ? Number.NaN : Number(Buffer.from(value.subarray(0, end)).toString('latin1'));
}

/** Wall-clock ms with sub-ms precision, comparable between processes on this machine. */
export const wallMs = (): number => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------------------
// The parent's side

export interface WatchReport {
  readonly watchers: number;
  readonly created: number;
  /** Watchers canceled by the server, or whose stream failed. */
  readonly failed: number;
  readonly firstFailure: string | null;
  readonly events: number;
  /** The fewest events any watcher received. */
  readonly eventsMin: number;
  /** The lowest last-seen mod_revision over the watchers (0: one saw nothing). */
  readonly lastRevisionMin: number;
  readonly firstEventMs: number | null;
  readonly lastEventMs: number | null;
  /** Lag (arrival − send stamp) over all events, ms. */
  readonly lagP50Ms: number;
  readonly lagP99Ms: number;
  /** The slowest watcher's largest lag, ms. */
  readonly lagMaxMs: number;
  /** CPU time (user + system) of the watcher processes, µs. */
  readonly clientCpuUs: number;
  /** The lag histogram (µs), compressed base64, for merging. */
  readonly lagHistogram: string;
}

type ToChild =
  | {
      readonly type: 'open';
      readonly endpoints: readonly string[];
      readonly key: string;
      readonly watchers: number;
      readonly streamsPerConnection: number;
    }
  | { readonly type: 'report' };
type FromChild =
  | { readonly type: 'opened' }
  | { readonly type: 'report'; readonly report: WatchReport }
  | { readonly type: 'error'; readonly message: string };

function newLagHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LAG_US_MAX,
    numberOfSignificantValueDigits: 3,
  });
}

export interface WatcherPoolOptions {
  /** Watcher processes (default 1); the watchers are split between them. */
  readonly processes?: number;
  readonly streamsPerConnection?: number;
}

export class WatcherPool {
  private closed = false;

  private constructor(private readonly children: readonly ChildProcess[]) {}

  /** Forks the watcher processes; resolves once every watcher is created (bounded). */
  static async start(
    endpoints: readonly string[],
    key: string,
    watchers: number,
    options: WatcherPoolOptions = {},
  ): Promise<WatcherPool> {
    const processes = options.processes ?? 1;
    const streamsPerConnection = options.streamsPerConnection ?? STREAMS_PER_CONNECTION_DEFAULT;
    if (!(Number.isInteger(watchers) && watchers >= 1 && watchers <= WATCHERS_MAX)) {
      throw new Error(`watchers must be 1..${WATCHERS_MAX}, got ${watchers}`);
    }
    if (!(Number.isInteger(processes) && processes >= 1 && processes <= WATCHER_PROCESSES_MAX)) {
      throw new Error(`watcher processes must be 1..${WATCHER_PROCESSES_MAX}, got ${processes}`);
    }
    if (
      !(
        Number.isInteger(streamsPerConnection) &&
        streamsPerConnection >= 1 &&
        streamsPerConnection <= STREAMS_PER_CONNECTION_MAX
      )
    ) {
      throw new Error(`streams per connection must be 1..${STREAMS_PER_CONNECTION_MAX}`);
    }
    const shares = Array.from(
      { length: Math.min(processes, watchers) },
      (_, i) => Math.floor(watchers / processes) + (i < watchers % processes ? 1 : 0),
    );
    const children = shares.map(() =>
      fork(fileURLToPath(import.meta.url), ['--watcher'], {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    const pool = new WatcherPool(children);
    try {
      await Promise.all(
        children.map((child, i) =>
          ask(
            child,
            { type: 'open', endpoints, key, watchers: shares[i]!, streamsPerConnection },
            'opened',
            OPEN_TIMEOUT_MS,
          ),
        ),
      );
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  pids(): number[] {
    return this.children.map((c) => c.pid).filter((pid) => pid !== undefined);
  }

  /** Every watcher's figures so far, merged over the processes. */
  async report(): Promise<WatchReport> {
    const reports = await Promise.all(
      this.children.map(
        async (child) =>
          (
            (await ask(child, { type: 'report' }, 'report', REPLY_TIMEOUT_MS)) as {
              report: WatchReport;
            }
          ).report,
      ),
    );
    return mergeReports(reports);
  }

  /** Disconnects every watcher process (they exit) and waits for each, by PID; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled(
      this.children.map(async (child) => {
        if (child.connected) child.disconnect();
        await stopChild(child, STOP_TIMEOUT_MS);
      }),
    );
  }
}

/** Sends `message` and waits (bounded) for a reply of type `expect`; an error reply rejects. */
function ask(
  child: ChildProcess,
  message: ToChild,
  expect: FromChild['type'],
  timeoutMs: number,
): Promise<FromChild> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`watcher process ${child.pid}: no '${expect}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`watcher process ${child.pid} exited (code ${code})`));
    };
    const onMessage = (reply: FromChild): void => {
      if (reply.type === 'error') {
        done();
        reject(new Error(`watcher process ${child.pid}: ${reply.message}`));
      } else if (reply.type === expect) {
        done();
        resolve(reply);
      }
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send(message);
  });
}

export function mergeReports(reports: readonly WatchReport[]): WatchReport {
  if (reports.length === 1) return reports[0]!;
  const lags = newLagHistogram();
  for (const r of reports) {
    const one = hdr.decodeFromCompressedBase64(r.lagHistogram);
    lags.add(one);
    one.destroy();
  }
  const sum = (f: (r: WatchReport) => number): number => reports.reduce((a, r) => a + f(r), 0);
  const times = (f: (r: WatchReport) => number | null): number[] =>
    reports.map(f).filter((t) => t !== null);
  const firsts = times((r) => r.firstEventMs);
  const lasts = times((r) => r.lastEventMs);
  const merged: WatchReport = {
    watchers: sum((r) => r.watchers),
    created: sum((r) => r.created),
    failed: sum((r) => r.failed),
    firstFailure: reports.find((r) => r.firstFailure !== null)?.firstFailure ?? null,
    events: sum((r) => r.events),
    eventsMin: Math.min(...reports.map((r) => r.eventsMin)),
    lastRevisionMin: Math.min(...reports.map((r) => r.lastRevisionMin)),
    firstEventMs: firsts.length === 0 ? null : Math.min(...firsts),
    lastEventMs: lasts.length === 0 ? null : Math.max(...lasts),
    lagP50Ms: lags.getValueAtPercentile(50) / 1000,
    lagP99Ms: lags.getValueAtPercentile(99) / 1000,
    lagMaxMs: Math.max(...reports.map((r) => r.lagMaxMs)),
    clientCpuUs: sum((r) => r.clientCpuUs),
    lagHistogram: hdr.encodeIntoCompressedBase64(lags),
  };
  lags.destroy();
  return merged;
}

// ---------------------------------------------------------------------------------------------
// The child

const identity = (buf: Buffer): Buffer => buf;

interface WatcherState {
  created: boolean;
  failed: boolean;
  events: number;
  lastRevision: number;
  lagMaxMs: number;
}

function serveWatchers(): void {
  const send = (message: FromChild): void => {
    process.send?.(message);
  };
  process.on('disconnect', () => process.exit(0));
  const states: WatcherState[] = [];
  const lags = newLagHistogram();
  let firstFailure: string | null = null;
  let firstEventMs: number | null = null;
  let lastEventMs: number | null = null;
  const cpuStart = process.cpuUsage();

  const fail = (state: WatcherState, why: string): void => {
    if (state.failed) return;
    state.failed = true;
    firstFailure ??= why;
  };

  const open = async (message: Extract<ToChild, { type: 'open' }>): Promise<void> => {
    const connections = Math.ceil(message.watchers / message.streamsPerConnection);
    const channels = Array.from(
      { length: connections },
      (_, i) =>
        new grpc.Client(
          message.endpoints[i % message.endpoints.length]!,
          grpc.credentials.createInsecure(),
          { 'grpc.use_local_subchannel_pool': 1 },
        ),
    );
    const create = encodeWatchCreate(Buffer.from(message.key));
    for (let from = 0; from < message.watchers; from += CREATE_BATCH) {
      const batch: Promise<void>[] = [];
      for (let i = from; i < Math.min(message.watchers, from + CREATE_BATCH); i++) {
        const state: WatcherState = {
          created: false,
          failed: false,
          events: 0,
          lastRevision: 0,
          lagMaxMs: 0,
        };
        states.push(state);
        batch.push(
          new Promise<void>((resolve) => {
            const call = channels[i % connections]!.makeBidiStreamRequest(
              '/etcdserverpb.Watch/Watch',
              identity,
              identity,
            );
            call.on('data', (data: Buffer) => {
              const arrivedMs = wallMs();
              let response: DecodedWatchResponse;
              try {
                response = decodeWatchResponse(data);
              } catch (error) {
                fail(state, `undecodable WatchResponse: ${(error as Error).message}`);
                resolve();
                return;
              }
              if (response.created && !state.created) {
                state.created = true;
                resolve();
              }
              if (response.canceled) {
                fail(state, `canceled: ${response.cancelReason}`);
                resolve();
              }
              for (const event of response.events) {
                state.events++;
                state.lastRevision = Math.max(state.lastRevision, event.modRevision);
                const lagMs = arrivedMs - stampOf(event.value);
                if (Number.isFinite(lagMs)) {
                  lags.recordValue(Math.min(LAG_US_MAX, Math.max(1, Math.round(lagMs * 1000))));
                  if (lagMs > state.lagMaxMs) state.lagMaxMs = lagMs;
                }
                firstEventMs ??= arrivedMs;
                lastEventMs = arrivedMs;
              }
            });
            call.on('error', (error: Error) => {
              fail(state, error.message);
              resolve();
            });
            call.on('end', () => {
              if (!state.created) fail(state, 'stream ended before the watcher was created');
              resolve();
            });
            call.write(create);
          }),
        );
      }
      await Promise.all(batch);
    }
  };

  const report = (): WatchReport => {
    const cpu = process.cpuUsage(cpuStart);
    return {
      watchers: states.length,
      created: states.filter((s) => s.created).length,
      failed: states.filter((s) => s.failed).length,
      firstFailure,
      events: states.reduce((a, s) => a + s.events, 0),
      eventsMin: states.reduce((a, s) => Math.min(a, s.events), Number.MAX_SAFE_INTEGER),
      lastRevisionMin: states.reduce(
        (a, s) => Math.min(a, s.lastRevision),
        Number.MAX_SAFE_INTEGER,
      ),
      firstEventMs,
      lastEventMs,
      lagP50Ms: lags.getValueAtPercentile(50) / 1000,
      lagP99Ms: lags.getValueAtPercentile(99) / 1000,
      lagMaxMs: states.reduce((a, s) => Math.max(a, s.lagMaxMs), 0),
      clientCpuUs: cpu.user + cpu.system,
      lagHistogram: hdr.encodeIntoCompressedBase64(lags),
    };
  };

  process.on('message', (message: ToChild) => {
    if (message.type === 'open') {
      open(message).then(
        () => {
          const failed = states.filter((s) => s.failed).length;
          if (failed > 0) send({ type: 'error', message: `${failed} watchers: ${firstFailure}` });
          else send({ type: 'opened' });
        },
        (error: Error) => send({ type: 'error', message: error.message }),
      );
    } else if (message.type === 'report') {
      send({ type: 'report', report: report() });
    }
  });
}

if (process.argv.includes('--watcher')) serveWatchers();
