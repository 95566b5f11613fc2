/**
 * A closed-loop load generator over the etcd v3 gRPC API (KV.Put, KV.Range), for any
 * etcd-compatible endpoint list: real etcd today, tandem later, with the same code.
 *
 * Why @grpc/grpc-js with hand-written protobuf rather than the `etcd3` client: the generator
 * must not be the bottleneck, and on a shared 2-core machine every client microsecond is taken
 * from the servers. A Put here is one Buffer.allocUnsafe and a few byte copies; `etcd3` adds a
 * builder object, a Promise chain, protobufjs reflection (proto-loader) on both directions and
 * its retry/pool layers per call. `bench/overhead.ts` measures both against a null server.
 *
 * Closed loop: each of `inFlight` workers sends its next request when the previous one is
 * answered, so latencies under saturation include no queueing in the generator and are subject
 * to coordinated omission (a stalled server slows the offered load too). That is the usual etcd
 * `benchmark` tool behaviour, so figures compare with published etcd numbers.
 */
import { randomFillSync } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';

// ---------------------------------------------------------------------------------------------
// Limits

export const IN_FLIGHT_MAX = 4096;
/** A cell stops at whichever comes first: its op count, its duration, or this many errors. */
export const ERRORS_MAX = 100;
export const REQUEST_TIMEOUT_MS_DEFAULT = 5000;
/** Latencies are recorded in microseconds up to this (a minute); longer is clamped. */
const LATENCY_US_MAX = 60_000_000;
/** Keys remembered from puts for later gets (bounded memory). */
export const GET_KEYS_MAX = 10_000;
export const VALUE_BYTES_MAX = 1024 * 1024;
export const CONNECTIONS_PER_ENDPOINT_MAX = 16;

// ---------------------------------------------------------------------------------------------
// Minimal protobuf for etcdserverpb (rpc.proto): only the fields the generator uses.
//   PutRequest   { bytes key = 1; bytes value = 2; }
//   RangeRequest { bytes key = 1; }                 (serializable = 7 left false: linearizable)
//   RangeResponse{ ResponseHeader header = 1; repeated KeyValue kvs = 2; bool more = 3; int64 count = 4; }

function varintBytes(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    bytes++;
  }
  return bytes;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

function writeBytesField(buf: Buffer, at: number, tag: number, data: Uint8Array): number {
  buf[at++] = tag;
  at = writeVarint(buf, at, data.length);
  buf.set(data, at);
  return at + data.length;
}

/** Encodes a PutRequest (field 1 key, field 2 value; wire type 2 = length-delimited). */
export function encodePut(key: Uint8Array, value: Uint8Array): Buffer {
  const size = 2 + varintBytes(key.length) + key.length + varintBytes(value.length) + value.length;
  const buf = Buffer.allocUnsafe(size);
  const end = writeBytesField(buf, writeBytesField(buf, 0, 0x0a, key), 0x12, value);
  if (end !== size) throw new Error(`encodePut: wrote ${end} of ${size} bytes`);
  return buf;
}

/** Encodes a RangeRequest for one key, linearizable (serializable = false is the default). */
export function encodeRange(key: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(1 + varintBytes(key.length) + key.length);
  writeBytesField(buf, 0, 0x0a, key);
  return buf;
}

/**
 * The number of `kvs` (field 2) in a RangeResponse, without decoding them: a get that finds no
 * value is counted as an error, so a benchmark of empty reads cannot pass for a real one.
 */
export function countRangeKvs(buf: Buffer): number {
  let at = 0;
  let kvs = 0;
  while (at < buf.length) {
    const tag = buf[at++]!;
    const wireType = tag & 7;
    if (wireType === 0) {
      while (buf[at++]! & 0x80) {}
    } else if (wireType === 2) {
      let length = 0;
      let shift = 1;
      let byte: number;
      do {
        byte = buf[at++]!;
        length += (byte & 0x7f) * shift;
        shift *= 128;
      } while (byte & 0x80);
      if (tag >>> 3 === 2) kvs++;
      at += length;
    } else {
      throw new Error(`RangeResponse: unexpected wire type ${wireType}`);
    }
  }
  return kvs;
}

const identity = (buf: Buffer): Buffer => buf;

// ---------------------------------------------------------------------------------------------
// The client

export type Workload = 'put' | 'get';

export interface KvClient {
  put(key: Uint8Array, value: Uint8Array, done: (error: Error | null) => void): void;
  /** Linearizable get of one key; `found` is the number of kvs returned. */
  get(key: Uint8Array, done: (error: Error | null, found: number) => void): void;
  close(): void;
}

export interface GrpcKvClientOptions {
  /** Separate HTTP/2 connections per endpoint (default 1, like clientv3 and etcd3). */
  readonly connectionsPerEndpoint?: number;
}

/**
 * Requests rotate over one gRPC channel per (endpoint, connection). No per-call deadline: in
 * grpc-js each one arms its own timer, a measurable cost per request; `runCell` bounds a cell
 * with one timer instead (undici's coarse-timer idea).
 */
export class GrpcKvClient implements KvClient {
  private readonly channels: grpc.Client[] = [];
  private next = 0;

  constructor(endpoints: readonly string[], options: GrpcKvClientOptions = {}) {
    const connections = options.connectionsPerEndpoint ?? 1;
    if (endpoints.length === 0) throw new Error('GrpcKvClient: no endpoints');
    if (!(connections >= 1 && connections <= CONNECTIONS_PER_ENDPOINT_MAX)) {
      throw new Error(`connectionsPerEndpoint must be 1..${CONNECTIONS_PER_ENDPOINT_MAX}`);
    }
    for (const endpoint of endpoints) {
      for (let i = 0; i < connections; i++) {
        this.channels.push(
          new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
            // Without this grpc-js shares one subchannel (one TCP connection) per target.
            'grpc.use_local_subchannel_pool': 1,
            'grpc.max_receive_message_length': 16 * 1024 * 1024,
          }),
        );
      }
    }
  }

  /** Resolves once every channel is connected (fails after `timeoutMs`). */
  ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    return Promise.all(
      this.channels.map(
        (channel) =>
          new Promise<void>((resolve, reject) => {
            channel.waitForReady(deadline, (error) => (error ? reject(error) : resolve()));
          }),
      ),
    ).then(() => undefined);
  }

  private channel(): grpc.Client {
    const channel = this.channels[this.next]!;
    this.next = (this.next + 1) % this.channels.length;
    return channel;
  }

  put(key: Uint8Array, value: Uint8Array, done: (error: Error | null) => void): void {
    this.channel().makeUnaryRequest(
      '/etcdserverpb.KV/Put',
      identity,
      identity,
      encodePut(key, value),
      (error) => done(error ?? null),
    );
  }

  get(key: Uint8Array, done: (error: Error | null, found: number) => void): void {
    this.channel().makeUnaryRequest(
      '/etcdserverpb.KV/Range',
      identity,
      identity,
      encodeRange(key),
      (error, response) => {
        if (error || response === undefined) done(error ?? new Error('empty response'), 0);
        else done(null, countRangeKvs(response));
      },
    );
  }

  close(): void {
    for (const channel of this.channels) channel.close();
  }
}

// ---------------------------------------------------------------------------------------------
// One measurement cell: a workload at a fixed number of requests in flight

export interface CellOptions {
  readonly workload: Workload;
  readonly inFlight: number;
  readonly opsMax: number;
  readonly durationMs: number;
  readonly valueBytes: number;
  /** Put keys are `${keyPrefix}/${seq}`: unique per run. */
  readonly keyPrefix: string;
  /** Keys for gets (from earlier puts); required for the get workload. */
  readonly getKeys?: readonly Uint8Array[];
  /** Requests still unanswered this long after the cell's end are counted as errors. */
  readonly requestTimeoutMs?: number;
}

export interface CellResult {
  readonly workload: Workload;
  readonly inFlight: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly elapsedMs: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU time (user + system) of this process per completed op: the generator's own cost. */
  readonly clientCpuUsPerOp: number;
  /** Keys written by a put cell (up to GET_KEYS_MAX), for a later get cell. */
  readonly keysWritten: Uint8Array[];
}

export function runCell(client: KvClient, options: CellOptions): Promise<CellResult> {
  const { workload, inFlight, opsMax, durationMs, valueBytes } = options;
  if (!(Number.isInteger(inFlight) && inFlight >= 1 && inFlight <= IN_FLIGHT_MAX)) {
    throw new Error(`inFlight must be 1..${IN_FLIGHT_MAX}, got ${inFlight}`);
  }
  if (!(opsMax >= 1 && durationMs >= 1)) throw new Error('a cell needs opsMax and durationMs');
  if (!(valueBytes >= 0 && valueBytes <= VALUE_BYTES_MAX))
    throw new Error('valueBytes out of range');
  const getKeys = options.getKeys ?? [];
  if (workload === 'get' && getKeys.length === 0) throw new Error('get workload needs getKeys');

  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_US_MAX,
    numberOfSignificantValueDigits: 3,
  });
  const value = randomFillSync(Buffer.alloc(valueBytes));
  const keysWritten: Uint8Array[] = [];
  let started = 0;
  let completed = 0;
  let errors = 0;
  let firstError: string | null = null;
  let running = inFlight;
  const cpuStart = process.cpuUsage();
  const startMs = performance.now();
  const stopAtMs = startMs + durationMs;

  const requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;

  return new Promise<CellResult>((resolve) => {
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(watchdog);
      const elapsedMs = performance.now() - startMs;
      const cpu = process.cpuUsage(cpuStart);
      const ok = completed - errors;
      resolve({
        workload,
        inFlight,
        ops: ok,
        errors,
        firstError,
        elapsedMs,
        opsPerSec: (ok * 1000) / elapsedMs,
        p50Ms: histogram.getValueAtPercentile(50) / 1000,
        p99Ms: histogram.getValueAtPercentile(99) / 1000,
        maxMs: histogram.maxValue / 1000,
        clientCpuUsPerOp: completed === 0 ? 0 : (cpu.user + cpu.system) / completed,
        keysWritten,
      });
      histogram.destroy();
    };
    // One timer bounds the whole cell: requests a stuck server never answers become errors.
    const watchdog = setTimeout(() => {
      const unanswered = started - completed;
      errors += unanswered;
      completed += unanswered;
      firstError ??= `${unanswered} requests unanswered ${requestTimeoutMs} ms after the cell's end`;
      finish();
    }, durationMs + requestTimeoutMs);

    const issue = (): void => {
      if (finished) return;
      if (started >= opsMax || errors >= ERRORS_MAX || performance.now() >= stopAtMs) {
        if (--running === 0) finish();
        return;
      }
      const seq = started++;
      const sentMs = performance.now();
      const onDone = (error: Error | null): void => {
        if (finished) return; // answered after the watchdog gave up on it
        completed++;
        if (error) {
          errors++;
          firstError ??= error.message;
        } else {
          const latencyUs = Math.round((performance.now() - sentMs) * 1000);
          histogram.recordValue(Math.min(LATENCY_US_MAX, latencyUs));
        }
        // Next request on a fresh tick after an error: a synchronous error path must not
        // recurse without bound.
        if (error) setImmediate(issue);
        else issue();
      };
      if (workload === 'put') {
        const key = Buffer.from(`${options.keyPrefix}/${seq}`);
        if (keysWritten.length < GET_KEYS_MAX) keysWritten.push(key);
        client.put(key, value, onDone);
      } else {
        client.get(getKeys[seq % getKeys.length]!, (error, found) => {
          onDone(error ?? (found === 1 ? null : new Error(`get found ${found} kvs, expected 1`)));
        });
      }
    };
    for (let i = 0; i < inFlight; i++) issue();
  });
}

// ---------------------------------------------------------------------------------------------
// Reporting

export interface Row extends CellResult {
  readonly target: string;
  /** CPU time of the server's processes (all members) per completed op; null: not measured. */
  readonly serverCpuUsPerOp?: number | null;
}

const fixed = (n: number, digits: number): string => n.toFixed(digits);

export function markdownTable(rows: readonly Row[]): string {
  const lines = [
    '| target | workload | in flight | ops | errors | ops/s | p50 ms | p99 ms | max ms | client CPU µs/op | server CPU µs/op |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.target} | ${r.workload} | ${r.inFlight} | ${r.ops} | ${r.errors} | ${fixed(r.opsPerSec, 0)} | ` +
        `${fixed(r.p50Ms, 2)} | ${fixed(r.p99Ms, 2)} | ${fixed(r.maxMs, 2)} | ${fixed(r.clientCpuUsPerOp, 1)} | ` +
        `${r.serverCpuUsPerOp == null ? '—' : fixed(r.serverCpuUsPerOp, 0)} |`,
    );
  }
  const failed = rows.filter((r) => r.firstError !== null);
  for (const r of failed) {
    lines.push('', `- ${r.target} ${r.workload} @${r.inFlight}: first error: ${r.firstError}`);
  }
  return lines.join('\n');
}
