/**
 * The gRPC edge alone: grpc-js's Server against tandem's own (src/api/grpc/), each in its own
 * process answering KV.Put, driven by the same grpc-js client (bench/load.ts). Servers:
 *
 *   grpc-js        grpc-js Server, canned PutResponse bytes (bench/null-server.ts's server)
 *   lean           src/api/grpc/ GrpcServer, the same canned bytes
 *   lean+loader    GrpcServer, the request decoded and a PutResponse encoded by proto-loader
 *   lean+fast      GrpcServer, the same with the hand-written codecs (src/api/proto-codec.ts)
 *
 * Interleaved over several rounds (the order alternates), each round: a cell at 64 requests in
 * flight (server CPU µs per call, calls/s) and a cell at 1 in flight (latency). Prints every
 * round and the medians. This VM is noisy: read the spread, not one number.
 *
 *   node --import tsx bench/grpc-edge.ts [--rounds 5] [--cell-ms 2000] [--servers a,b,...]
 *                                        [--cpu-prof DIR] [--codecs]
 *
 * --codecs adds the codecs alone: proto-loader's against the hand-written ones, µs per message.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { frameMessage } from '../src/api/grpc/framing.js';
import { unaryHandler } from '../src/api/grpc/handlers.js';
import { GrpcServer } from '../src/api/grpc/server.js';
import { Status } from '../src/api/grpc/status.js';
import { loadEtcdProto, serviceDefinition } from '../src/api/proto.js';
import { KV_CODECS } from '../src/api/proto-codec.js';
import { stopChild } from '../src/cli/local-process.js';
import { GrpcKvClient, runCell } from './load.js';

const SERVERS = ['grpc-js', 'lean', 'lean+loader', 'lean+fast'] as const;
type ServerKind = (typeof SERVERS)[number];

const START_TIMEOUT_MS = 10_000;
const IN_FLIGHT_THROUGHPUT = 64;
const VALUE_BYTES = 256;
const PUT_PATH = '/etcdserverpb.KV/Put';

/** ResponseHeader { cluster_id = 1, member_id = 2, revision = 3, raft_term = 4 }. */
const HEADER = Buffer.from([0x08, 0x01, 0x10, 0x01, 0x18, 0x02, 0x20, 0x01]);
const PUT_RESPONSE = Buffer.concat([Buffer.from([0x0a, HEADER.length]), HEADER]);
const PUT_RESPONSE_OBJECT = {
  header: {
    clusterId: '16045690984503098046',
    memberId: '17293822569102704640',
    revision: 3,
    raftTerm: 1,
  },
  prevKv: null,
};

const logger = { debug: () => {}, warn: () => {} };

async function serve(kind: ServerKind): Promise<number> {
  if (kind === 'grpc-js') {
    const server = new grpc.Server();
    const identity = (b: Buffer): Buffer => b;
    server.register(
      PUT_PATH,
      (_call: unknown, callback: grpc.sendUnaryData<Buffer>) => callback(null, PUT_RESPONSE),
      identity,
      identity,
      'unary',
    );
    return new Promise((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
        err === null ? resolve(port) : reject(err),
      ),
    );
  }
  const server = new GrpcServer({
    receiveMessageBytesMax: 2 * 1024 * 1024,
    sendMessageBytesMax: 2 ** 31 - 1,
    concurrentStreamsMax: 2 ** 32 - 1,
    keepaliveTimeMs: 2 * 60 * 60 * 1000,
    keepaliveTimeoutMs: 20_000,
    statusOf: () => ({ code: Status.INTERNAL, details: 'bench: error' }),
    logger,
  });
  const put = { path: PUT_PATH, requestStream: false, responseStream: false };
  if (kind === 'lean') {
    const framed = frameMessage(PUT_RESPONSE);
    const codec = { decodeRequest: (b: Buffer) => b, encodeResponse: () => framed };
    server.addService({ Put: { ...put, codec } }, { Put: unaryHandler(async () => null) });
  } else {
    loadEtcdProto();
    const def = serviceDefinition('kv').Put!;
    const codec =
      kind === 'lean+fast'
        ? KV_CODECS.Put!
        : {
            decodeRequest: (b: Buffer) => def.requestDeserialize(b),
            encodeResponse: (r: unknown) => frameMessage(def.responseSerialize(r)),
          };
    server.addService(
      { Put: { ...put, codec } },
      {
        Put: unaryHandler(async (request: { key: Buffer }) => {
          if (request.key.length === 0) throw new Error('no key');
          return PUT_RESPONSE_OBJECT;
        }),
      },
    );
  }
  return server.listen('127.0.0.1:0');
}

/** --cpu-prof DIR: each server process writes a V8 CPU profile there when it exits. */
function profileArgs(): string[] {
  const i = process.argv.indexOf('--cpu-prof');
  return i === -1 ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.argv[i + 1]}`];
}

/** ns per call of `f`, the median of three runs of `n` calls after a warm-up. */
function nsPerCall(f: () => unknown, n: number): number {
  const run = () => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    return Number(process.hrtime.bigint() - start) / n;
  };
  run();
  return median([run(), run(), run()]);
}

/** The codecs alone, in this process: proto-loader's against the hand-written ones. */
function codecBench(): void {
  loadEtcdProto();
  const kv = serviceDefinition('kv');
  const fast = KV_CODECS;
  const kvOf = (i: number) => ({
    key: Buffer.from(`bench/key/${i}`),
    createRevision: 1000 + i,
    modRevision: 2000 + i,
    version: 3,
    value: Buffer.alloc(VALUE_BYTES, 97),
    lease: 0,
  });
  const header = PUT_RESPONSE_OBJECT.header;
  const range1 = { header, kvs: [kvOf(1)], more: false, count: 1 };
  const range100 = { header, kvs: Array.from({ length: 100 }, (_, i) => kvOf(i)), count: 100 };
  const put = kv.Put!.requestSerialize({ key: Buffer.from('bench/key/1'), value: kvOf(1).value });
  const range = kv.Range!.requestSerialize({ key: Buffer.from('bench/key/1') });
  const txn = kv.Txn!.requestSerialize({
    compare: [{ key: Buffer.from('k'), target: 2, modRevision: 5 }],
    success: [{ requestPut: { key: Buffer.from('k'), value: kvOf(1).value } }],
    failure: [{ requestRange: { key: Buffer.from('k') } }],
  });
  const txnResponse = {
    header,
    succeeded: true,
    responses: [
      { responsePut: { header: { clusterId: 0, memberId: 0, revision: 5, raftTerm: 0 } } },
    ],
  };
  const loaderEncode = (m: string, r: unknown) => frameMessage(kv[m]!.responseSerialize(r));
  const cases: [string, number, () => unknown, () => unknown][] = [
    [
      'PutRequest decode',
      1e5,
      () => kv.Put!.requestDeserialize(put),
      () => fast.Put!.decodeRequest(put),
    ],
    [
      'RangeRequest decode',
      1e5,
      () => kv.Range!.requestDeserialize(range),
      () => fast.Range!.decodeRequest(range),
    ],
    [
      'TxnRequest decode',
      1e5,
      () => kv.Txn!.requestDeserialize(txn),
      () => fast.Txn!.decodeRequest(txn),
    ],
    [
      'PutResponse encode',
      1e5,
      () => loaderEncode('Put', PUT_RESPONSE_OBJECT),
      () => fast.Put!.encodeResponse(PUT_RESPONSE_OBJECT),
    ],
    [
      'RangeResponse 1 kv',
      1e5,
      () => loaderEncode('Range', range1),
      () => fast.Range!.encodeResponse(range1),
    ],
    [
      'RangeResponse 100 kvs',
      2e3,
      () => loaderEncode('Range', range100),
      () => fast.Range!.encodeResponse(range100),
    ],
    [
      'TxnResponse (a put)',
      1e5,
      () => loaderEncode('Txn', txnResponse),
      () => fast.Txn!.encodeResponse(txnResponse),
    ],
  ];
  console.log('\ncodecs (µs per message): proto-loader vs hand-written');
  for (const [name, n, loader, hand] of cases) {
    const a = nsPerCall(loader, n) / 1000;
    const b = nsPerCall(hand, n) / 1000;
    console.log(
      `${name.padEnd(22)} ${a.toFixed(2).padStart(8)} ${b.toFixed(2).padStart(8)}  x${(a / b).toFixed(1)}`,
    );
  }
}

interface Child {
  readonly kind: ServerKind;
  readonly endpoint: string;
  cpuUs(): Promise<number>;
  stop(): Promise<void>;
}

function startChild(kind: ServerKind): Promise<Child> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve', kind], {
    execArgv: ['--import', 'tsx', ...profileArgs()],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const cpuUs = () =>
    new Promise<number>((resolve) => {
      child.once('message', (m: { cpuUs: number }) => resolve(m.cpuUs));
      child.send('cpu');
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} did not start`)), START_TIMEOUT_MS);
    child.once('message', (m: { port: number }) => {
      clearTimeout(timer);
      resolve({
        kind,
        endpoint: `127.0.0.1:${m.port}`,
        cpuUs,
        stop: () => stopChild(child, 2000),
      });
    });
  });
}

interface RoundResult {
  readonly kind: ServerKind;
  readonly callsPerSec: number;
  readonly serverCpuUsPerCall: number;
  readonly clientCpuUsPerCall: number;
  readonly p50MsAt1: number;
  readonly p99MsAt1: number;
  readonly p50MsAt64: number;
}

async function measure(child: Child, client: GrpcKvClient, cellMs: number): Promise<RoundResult> {
  const cell = { workload: 'put' as const, opsMax: 10_000_000, valueBytes: VALUE_BYTES };
  const before = await child.cpuUs();
  const wide = await runCell(client, {
    ...cell,
    inFlight: IN_FLIGHT_THROUGHPUT,
    durationMs: cellMs,
    keyPrefix: 'bench/wide',
  });
  const after = await child.cpuUs();
  const narrow = await runCell(client, {
    ...cell,
    inFlight: 1,
    durationMs: cellMs / 2,
    keyPrefix: 'bench/narrow',
  });
  if (wide.errors + narrow.errors > 0) throw new Error(`${child.kind}: ${wide.firstError}`);
  return {
    kind: child.kind,
    callsPerSec: wide.opsPerSec,
    serverCpuUsPerCall: (after - before) / wide.ops,
    clientCpuUsPerCall: wide.clientCpuUsPerOp,
    p50MsAt1: narrow.p50Ms,
    p99MsAt1: narrow.p99Ms,
    p50MsAt64: wide.p50Ms,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : process.argv[i + 1]!;
}

async function main(): Promise<void> {
  const rounds = Number(arg('--rounds', '5'));
  const cellMs = Number(arg('--cell-ms', '2000'));
  const kinds = arg('--servers', SERVERS.join(',')).split(',') as ServerKind[];
  const children = await Promise.all(kinds.map(startChild));
  const clients = children.map((c) => new GrpcKvClient([c.endpoint]));
  try {
    await Promise.all(clients.map((c) => c.ready(START_TIMEOUT_MS)));
    for (let i = 0; i < children.length; i++) await measure(children[i]!, clients[i]!, 1000);
    const results: RoundResult[] = [];
    const f = (n: number, digits = 1) => n.toFixed(digits).padStart(8);
    console.log(
      'round  server        calls/s  srv µs/call  cli µs/call  p50@64 ms  p50@1 ms  p99@1 ms',
    );
    for (let round = 0; round < rounds; round++) {
      const order = children.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        const r = await measure(children[i]!, clients[i]!, cellMs);
        results.push(r);
        console.log(
          `${String(round).padStart(5)}  ${r.kind.padEnd(12)} ${f(r.callsPerSec, 0)}  ${f(r.serverCpuUsPerCall)}     ${f(r.clientCpuUsPerCall)}     ${f(r.p50MsAt64, 3)}  ${f(r.p50MsAt1, 3)}  ${f(r.p99MsAt1, 3)}`,
        );
      }
    }
    console.log(
      '\nmedians over rounds (ratio: the median of per-round ratios to the first server)',
    );
    const base = results.filter((r) => r.kind === kinds[0]);
    for (const kind of kinds) {
      const mine = results.filter((r) => r.kind === kind);
      const m = (pick: (r: RoundResult) => number) => median(mine.map(pick));
      const cpus = mine.map((r) => r.serverCpuUsPerCall.toFixed(1)).join(' ');
      const ratio = median(mine.map((r, i) => r.serverCpuUsPerCall / base[i]!.serverCpuUsPerCall));
      console.log(
        `${kind.padEnd(12)} calls/s ${f(
          m((r) => r.callsPerSec),
          0,
        )}` +
          `  server µs/call ${f(m((r) => r.serverCpuUsPerCall))} [${cpus}] x${ratio.toFixed(2)}` +
          `  p50@1 ${f(
            m((r) => r.p50MsAt1),
            3,
          )} ms  p99@1 ${f(
            m((r) => r.p99MsAt1),
            3,
          )} ms`,
      );
    }
    if (process.argv.includes('--codecs')) codecBench();
  } finally {
    for (const c of clients) c.close();
    await Promise.all(children.map((c) => c.stop()));
  }
}

if (process.argv.includes('--serve')) {
  const kind = process.argv[process.argv.indexOf('--serve') + 1] as ServerKind;
  serve(kind).then((port) => {
    process.on('message', () => {
      const cpu = process.cpuUsage();
      process.send?.({ cpuUs: cpu.user + cpu.system });
    });
    process.send?.({ port });
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0)); // exits cleanly: --cpu-prof writes its profile
} else {
  await main();
}
