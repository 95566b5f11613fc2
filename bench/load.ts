/**
 * A closed-loop load generator over the etcd v3 gRPC API (KV.Put, KV.Range, KV.Txn), for any
 * etcd-compatible endpoint list: real etcd and tandem, with the same code.
 *
 * Workloads (WORKLOADS):
 * - put: unique keys, fixed-size values.
 * - get: a linearizable single-key Range (etcd's default) of a key written earlier.
 * - get-serializable: the same Range with `serializable` set: answered by the member from its
 *   own state, no round to the leader.
 * - txn-read: a read-only Txn as Kubernetes and lock clients send them: compare the key's
 *   mod_revision > 0, success branch a (linearizable) Range of the key; a failed compare or a
 *   missing key counts as an error.
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
/** Keys the read workloads read (written before the first cell; bounded memory). */
export const READ_KEYS_MAX = 10_000;
export const VALUE_BYTES_MAX = 1024 * 1024;
export const CONNECTIONS_PER_ENDPOINT_MAX = 16;
/** Puts in one Txn of the put workload (etcd's default --max-txn-ops). */
export const PUTS_PER_TXN_MAX = 128;

// ---------------------------------------------------------------------------------------------
// Minimal protobuf for etcdserverpb (proto/rpc.proto): only the fields the generator uses.
//   PutRequest   { bytes key = 1; bytes value = 2; }
//   RangeRequest { bytes key = 1; bool serializable = 7; }
//   RangeResponse{ ResponseHeader header = 1; repeated KeyValue kvs = 2; bool more = 3; int64 count = 4; }
//   Compare      { CompareResult result = 1; CompareTarget target = 2; bytes key = 3;
//                  oneof target_union { ... int64 mod_revision = 6; ... } }
//   RequestOp    { oneof request { RangeRequest request_range = 1; ... } }
//   TxnRequest   { repeated Compare compare = 1; repeated RequestOp success = 2; ... }
//   ResponseOp   { oneof response { RangeResponse response_range = 1; ... } }
//   TxnResponse  { ResponseHeader header = 1; bool succeeded = 2; repeated ResponseOp responses = 3; }

/** Protobuf wire types. */
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

const tag = (field: number, wireType: number): number => (field << 3) | wireType;

/** Compare.CompareResult GREATER and Compare.CompareTarget MOD. */
const COMPARE_GREATER = 1;
const COMPARE_TARGET_MOD = 2;

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

function writeBytesField(buf: Buffer, at: number, tagByte: number, data: Uint8Array): number {
  buf[at++] = tagByte;
  at = writeVarint(buf, at, data.length);
  buf.set(data, at);
  return at + data.length;
}

/** The size of a length-delimited field with a one-byte tag and `length` bytes of data. */
const fieldBytes = (length: number): number => 1 + varintBytes(length) + length;

/** Encodes a PutRequest (field 1 key, field 2 value; wire type 2 = length-delimited). */
export function encodePut(key: Uint8Array, value: Uint8Array): Buffer {
  const size = fieldBytes(key.length) + fieldBytes(value.length);
  const buf = Buffer.allocUnsafe(size);
  const end = writeBytesField(buf, writeBytesField(buf, 0, 0x0a, key), 0x12, value);
  if (end !== size) throw new Error(`encodePut: wrote ${end} of ${size} bytes`);
  return buf;
}

/** Encodes a RangeRequest for one key: linearizable (etcd's default) unless `serializable`. */
export function encodeRange(key: Uint8Array, serializable = false): Buffer {
  const size = fieldBytes(key.length) + (serializable ? 2 : 0);
  const buf = Buffer.allocUnsafe(size);
  let at = writeBytesField(buf, 0, 0x0a, key);
  if (serializable) {
    buf[at++] = tag(7, VARINT);
    buf[at++] = 1;
  }
  if (at !== size) throw new Error(`encodeRange: wrote ${at} of ${size} bytes`);
  return buf;
}

/**
 * Encodes a read-only TxnRequest: compare mod_revision(key) > 0, success = Range(key). The
 * oneof field mod_revision = 0 is written although it is 0: a oneof member has presence, and
 * etcd's Go clients write it so.
 */
export function encodeTxnRead(key: Uint8Array): Buffer {
  const compare = Buffer.allocUnsafe(2 + 2 + fieldBytes(key.length) + 2);
  compare[0] = tag(1, VARINT);
  compare[1] = COMPARE_GREATER;
  compare[2] = tag(2, VARINT);
  compare[3] = COMPARE_TARGET_MOD;
  let at = writeBytesField(compare, 4, tag(3, LENGTH_DELIMITED), key);
  compare[at++] = tag(6, VARINT);
  compare[at++] = 0;
  if (at !== compare.length) throw new Error('encodeTxnRead: compare size');
  const range = encodeRange(key);
  const requestOp = Buffer.allocUnsafe(fieldBytes(range.length));
  writeBytesField(requestOp, 0, tag(1, LENGTH_DELIMITED), range);
  const size = fieldBytes(compare.length) + fieldBytes(requestOp.length);
  const buf = Buffer.allocUnsafe(size);
  const end = writeBytesField(
    buf,
    writeBytesField(buf, 0, tag(1, LENGTH_DELIMITED), compare),
    tag(2, LENGTH_DELIMITED),
    requestOp,
  );
  if (end !== size) throw new Error(`encodeTxnRead: wrote ${end} of ${size} bytes`);
  return buf;
}

/**
 * Encodes a TxnRequest without compares whose success branch puts every key with `value`
 * (RequestOp field 2: request_put): one Raft entry for many keys, as a bulk loader sends them.
 */
export function encodeTxnPuts(keys: readonly Uint8Array[], value: Uint8Array): Buffer {
  if (!(keys.length >= 1 && keys.length <= PUTS_PER_TXN_MAX)) {
    throw new Error(`encodeTxnPuts: 1..${PUTS_PER_TXN_MAX} keys, got ${keys.length}`);
  }
  const puts = keys.map((key) => encodePut(key, value));
  const size = puts.reduce((n, put) => n + fieldBytes(fieldBytes(put.length)), 0);
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  for (const put of puts) {
    buf[at++] = tag(2, LENGTH_DELIMITED); // TxnRequest.success
    at = writeVarint(buf, at, fieldBytes(put.length));
    at = writeBytesField(buf, at, tag(2, LENGTH_DELIMITED), put); // RequestOp.request_put
  }
  if (at !== size) throw new Error(`encodeTxnPuts: wrote ${at} of ${size} bytes`);
  return buf;
}

/** Reads a varint at `at`; returns [value, next offset]. Values up to 2^53 are exact. */
export function readVarint(buf: Uint8Array, at: number, end: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (at >= end) throw new Error('protobuf: varint runs past the end');
    const byte = buf[at++]!;
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return [value, at];
    scale *= 128;
  }
  throw new Error('protobuf: varint longer than 10 bytes');
}

/**
 * Calls `onField` for each field of the message in buf[start, end): the varint value for wire
 * type 0 (else 0), and the data's range for wire type 2 (else an empty one).
 */
export function forEachField(
  buf: Uint8Array,
  start: number,
  end: number,
  onField: (field: number, varint: number, from: number, to: number) => void,
): void {
  let at = start;
  while (at < end) {
    const [key, afterKey] = readVarint(buf, at, end);
    at = afterKey;
    const field = Math.floor(key / 8);
    const wireType = key & 7;
    if (wireType === VARINT) {
      const [value, next] = readVarint(buf, at, end);
      onField(field, value, next, next);
      at = next;
    } else if (wireType === LENGTH_DELIMITED) {
      const [length, from] = readVarint(buf, at, end);
      if (from + length > end) throw new Error('protobuf: field runs past the end');
      onField(field, 0, from, from + length);
      at = from + length;
    } else if (wireType === FIXED64 || wireType === FIXED32) {
      at += wireType === FIXED64 ? 8 : 4;
    } else {
      throw new Error(`protobuf: unexpected wire type ${wireType}`);
    }
  }
  if (at !== end) throw new Error('protobuf: message runs past the end');
}

/**
 * The number of `kvs` (field 2) in a RangeResponse at buf[start, end), without decoding them: a
 * get that finds no value is counted as an error, so a benchmark of empty reads cannot pass for
 * a real one.
 */
export function countRangeKvs(buf: Uint8Array, start = 0, end = buf.length): number {
  let kvs = 0;
  forEachField(buf, start, end, (field) => {
    if (field === 2) kvs++;
  });
  return kvs;
}

/** A TxnResponse's `succeeded` and the kvs of each range response, in order. */
export function decodeTxnRead(buf: Uint8Array): { succeeded: boolean; rangeKvs: number[] } {
  let succeeded = false;
  const rangeKvs: number[] = [];
  forEachField(buf, 0, buf.length, (field, varint, from, to) => {
    if (field === 2) succeeded = varint !== 0;
    if (field !== 3) return;
    forEachField(buf, from, to, (opField, _v, opFrom, opTo) => {
      if (opField === 1) rangeKvs.push(countRangeKvs(buf, opFrom, opTo));
    });
  });
  return { succeeded, rangeKvs };
}

const identity = (buf: Buffer): Buffer => buf;

// ---------------------------------------------------------------------------------------------
// The client

export const WORKLOADS = ['put', 'get', 'get-serializable', 'txn-read'] as const;
export type Workload = (typeof WORKLOADS)[number];

/** Workloads that read keys written before the cell (CellOptions.readKeys). */
export const isReadWorkload = (workload: Workload): boolean => workload !== 'put';

export interface KvClient {
  put(key: Uint8Array, value: Uint8Array, done: (error: Error | null) => void): void;
  /** A single-key Range; `found` is the number of kvs returned. */
  get(
    key: Uint8Array,
    serializable: boolean,
    done: (error: Error | null, found: number) => void,
  ): void;
  /**
   * The read-only Txn (see the header); `found` is the number of kvs of its success Range, and a
   * failed compare is an error.
   */
  txnRead(key: Uint8Array, done: (error: Error | null, found: number) => void): void;
  /** A Txn putting every key (the put workload with `putsPerTxn` > 1); optional. */
  txnPuts?(
    keys: readonly Uint8Array[],
    value: Uint8Array,
    done: (error: Error | null) => void,
  ): void;
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

  get(
    key: Uint8Array,
    serializable: boolean,
    done: (error: Error | null, found: number) => void,
  ): void {
    this.channel().makeUnaryRequest(
      '/etcdserverpb.KV/Range',
      identity,
      identity,
      encodeRange(key, serializable),
      (error, response) => {
        if (error || response === undefined) done(error ?? new Error('empty response'), 0);
        else done(null, countRangeKvs(response));
      },
    );
  }

  txnRead(key: Uint8Array, done: (error: Error | null, found: number) => void): void {
    this.channel().makeUnaryRequest(
      '/etcdserverpb.KV/Txn',
      identity,
      identity,
      encodeTxnRead(key),
      (error, response) => {
        if (error || response === undefined) {
          done(error ?? new Error('empty response'), 0);
          return;
        }
        const txn = decodeTxnRead(response);
        if (!txn.succeeded) done(new Error('txn compare failed (mod_revision > 0)'), 0);
        else if (txn.rangeKvs.length !== 1) done(new Error(`txn: ${txn.rangeKvs.length} ops`), 0);
        else done(null, txn.rangeKvs[0]!);
      },
    );
  }

  txnPuts(
    keys: readonly Uint8Array[],
    value: Uint8Array,
    done: (error: Error | null) => void,
  ): void {
    this.channel().makeUnaryRequest(
      '/etcdserverpb.KV/Txn',
      identity,
      identity,
      encodeTxnPuts(keys, value),
      (error, response) => {
        if (error || response === undefined) done(error ?? new Error('empty response'));
        else if (!decodeTxnRead(response).succeeded) done(new Error('txn of puts not succeeded'));
        else done(null);
      },
    );
  }

  close(): void {
    for (const channel of this.channels) channel.close();
  }
}

/** A command-line integer in 1..`max`, or an error naming the flag and what it got. */
export function intIn(flag: string, text: string, max: number): number {
  const value = Number(text);
  if (!(Number.isSafeInteger(value) && value >= 1 && value <= max)) {
    throw new Error(`${flag} must be an integer in 1..${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** One put as a promise, for sequential clients (1 in flight); rejects after `timeoutMs`. */
export function putOnce(
  client: KvClient,
  key: string,
  value: Uint8Array,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`put ${key} timed out`)), timeoutMs);
    client.put(Buffer.from(key), value, (error) => {
      clearTimeout(timer);
      if (error === null) resolve();
      else reject(error);
    });
  });
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
  /**
   * Puts per request of the put workload (default 1: a Put). Above 1 each request is a Txn of
   * that many puts (keys `${keyPrefix}/${seq}/${i}`), and `ops` counts Txns.
   */
  readonly putsPerTxn?: number;
  /** Keys for the read workloads (written before the cell); required for them. */
  readonly readKeys?: readonly Uint8Array[];
  /** The read workloads start at this index of `readKeys` (generators read different keys). */
  readonly readKeyOffset?: number;
  /** Requests still unanswered this long after the cell's end are counted as errors. */
  readonly requestTimeoutMs?: number;
}

export interface CellResult {
  readonly workload: Workload;
  /** Requests in flight, over all generators. */
  readonly inFlight: number;
  /** Load-generator processes whose results were merged into this one. */
  readonly generators: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly elapsedMs: number;
  /** Successful ops per second (summed over generators, each over its own elapsed time). */
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU time (user + system) of the generators per completed op: the client's own cost. */
  readonly clientCpuUsPerOp: number;
  readonly clientCpuUs: number;
  /** The latencies (µs) of successful ops: an HDR histogram, compressed base64, for merging. */
  readonly latencyHistogram: string;
}

function newLatencyHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_US_MAX,
    numberOfSignificantValueDigits: 3,
  });
}

export function runCell(client: KvClient, options: CellOptions): Promise<CellResult> {
  const { workload, inFlight, opsMax, durationMs, valueBytes } = options;
  if (!(Number.isInteger(inFlight) && inFlight >= 1 && inFlight <= IN_FLIGHT_MAX)) {
    throw new Error(`inFlight must be 1..${IN_FLIGHT_MAX}, got ${inFlight}`);
  }
  if (!(opsMax >= 1 && durationMs >= 1)) throw new Error('a cell needs opsMax and durationMs');
  if (!(valueBytes >= 0 && valueBytes <= VALUE_BYTES_MAX))
    throw new Error('valueBytes out of range');
  const readKeys = options.readKeys ?? [];
  if (isReadWorkload(workload) && readKeys.length === 0) {
    throw new Error(`the ${workload} workload needs readKeys`);
  }
  const readKeyOffset = options.readKeyOffset ?? 0;
  const putsPerTxn = options.putsPerTxn ?? 1;
  if (!(Number.isInteger(putsPerTxn) && putsPerTxn >= 1 && putsPerTxn <= PUTS_PER_TXN_MAX)) {
    throw new Error(`putsPerTxn must be 1..${PUTS_PER_TXN_MAX}, got ${putsPerTxn}`);
  }
  const txnPuts = client.txnPuts?.bind(client);
  if (putsPerTxn > 1 && txnPuts === undefined) throw new Error('this client cannot put in Txns');

  const histogram = newLatencyHistogram();
  const value = randomFillSync(Buffer.alloc(valueBytes));
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
        generators: 1,
        ops: ok,
        errors,
        firstError,
        elapsedMs,
        opsPerSec: (ok * 1000) / elapsedMs,
        p50Ms: histogram.getValueAtPercentile(50) / 1000,
        p99Ms: histogram.getValueAtPercentile(99) / 1000,
        maxMs: histogram.maxValue / 1000,
        clientCpuUsPerOp: completed === 0 ? 0 : (cpu.user + cpu.system) / completed,
        clientCpuUs: cpu.user + cpu.system,
        latencyHistogram: hdr.encodeIntoCompressedBase64(histogram),
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
      const onRead = (error: Error | null, found: number): void => {
        onDone(error ?? (found === 1 ? null : new Error(`read found ${found} kvs, expected 1`)));
      };
      if (workload === 'put' && putsPerTxn > 1) {
        const keys = Array.from({ length: putsPerTxn }, (_, i) =>
          Buffer.from(`${options.keyPrefix}/${seq}/${i}`),
        );
        txnPuts!(keys, value, onDone);
        return;
      }
      if (workload === 'put') {
        client.put(Buffer.from(`${options.keyPrefix}/${seq}`), value, onDone);
        return;
      }
      const key = readKeys[(readKeyOffset + seq) % readKeys.length]!;
      if (workload === 'txn-read') client.txnRead(key, onRead);
      else client.get(key, workload === 'get-serializable', onRead);
    };
    for (let i = 0; i < inFlight; i++) issue();
  });
}

/**
 * One result from the same cell run by several generators at once: ops, errors, in-flight
 * counts and rates summed, latency histograms merged (so p50/p99 are of all requests), the
 * elapsed time the longest.
 */
export function mergeCellResults(results: readonly CellResult[]): CellResult {
  if (results.length === 0) throw new Error('mergeCellResults: no results');
  if (results.length === 1) return results[0]!;
  const workload = results[0]!.workload;
  if (results.some((r) => r.workload !== workload)) throw new Error('merging different cells');
  const merged = newLatencyHistogram();
  for (const r of results) {
    const one = hdr.decodeFromCompressedBase64(r.latencyHistogram);
    merged.add(one);
    one.destroy();
  }
  const sum = (f: (r: CellResult) => number): number => results.reduce((a, r) => a + f(r), 0);
  const completed = sum((r) => r.ops + r.errors);
  const clientCpuUs = sum((r) => r.clientCpuUs);
  const result: CellResult = {
    workload,
    inFlight: sum((r) => r.inFlight),
    generators: sum((r) => r.generators),
    ops: sum((r) => r.ops),
    errors: sum((r) => r.errors),
    firstError: results.find((r) => r.firstError !== null)?.firstError ?? null,
    elapsedMs: Math.max(...results.map((r) => r.elapsedMs)),
    opsPerSec: sum((r) => r.opsPerSec),
    p50Ms: merged.getValueAtPercentile(50) / 1000,
    p99Ms: merged.getValueAtPercentile(99) / 1000,
    maxMs: merged.maxValue / 1000,
    clientCpuUsPerOp: completed === 0 ? 0 : clientCpuUs / completed,
    clientCpuUs,
    latencyHistogram: hdr.encodeIntoCompressedBase64(merged),
  };
  merged.destroy();
  return result;
}

// ---------------------------------------------------------------------------------------------
// Reporting

export interface Row extends CellResult {
  readonly target: string;
  /** CPU time of the server's processes (all members) per completed op; null: not measured. */
  readonly serverCpuUsPerOp?: number | null;
  /** Event-loop delay p99 per member during the cell, as printed ('n/a' where not measured). */
  readonly eventLoopP99?: string;
}

const fixed = (n: number, digits: number): string => n.toFixed(digits);

export function markdownTable(rows: readonly Row[]): string {
  const lines = [
    '| target | workload | in flight | gen | ops | errors | ops/s | p50 ms | p99 ms | max ms | client CPU µs/op | server CPU µs/op | event-loop delay p99 ms |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.target} | ${r.workload} | ${r.inFlight} | ${r.generators} | ${r.ops} | ${r.errors} | ${fixed(r.opsPerSec, 0)} | ` +
        `${fixed(r.p50Ms, 2)} | ${fixed(r.p99Ms, 2)} | ${fixed(r.maxMs, 2)} | ${fixed(r.clientCpuUsPerOp, 1)} | ` +
        `${r.serverCpuUsPerOp == null ? '—' : fixed(r.serverCpuUsPerOp, 0)} | ${r.eventLoopP99 ?? 'n/a'} |`,
    );
  }
  const failed = rows.filter((r) => r.firstError !== null);
  for (const r of failed) {
    lines.push('', `- ${r.target} ${r.workload} @${r.inFlight}: first error: ${r.firstError}`);
  }
  return lines.join('\n');
}
