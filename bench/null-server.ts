/**
 * A null etcd: a gRPC server that answers KV.Put, KV.Range and KV.Txn at once with canned
 * responses (a Range answer holds one 256-byte value, like a real hit; a Txn answer has
 * succeeded and that Range answer). Run in its own process, it measures
 * the load generator's ceiling: whatever rate the generator reaches against it is the most it
 * can offer a real server on this machine.
 *
 *   startNullServer() forks this file; run directly, it binds and reports its port over IPC.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { stopChild } from '../src/cli/local-process.js';

const START_TIMEOUT_MS = 10_000;

/** ResponseHeader { cluster_id = 1, member_id = 2, revision = 3, raft_term = 4 }. */
const HEADER = Buffer.from([0x08, 0x01, 0x10, 0x01, 0x18, 0x02, 0x20, 0x01]);
const PUT_RESPONSE = Buffer.concat([Buffer.from([0x0a, HEADER.length]), HEADER]);

function rangeResponse(): Buffer {
  const key = Buffer.from('bench/key');
  const value = Buffer.alloc(256, 0x61);
  // KeyValue { key = 1, create_revision = 2, mod_revision = 3, version = 4, value = 5 }
  const kv = Buffer.concat([
    Buffer.from([0x0a, key.length]),
    key,
    Buffer.from([0x10, 0x02, 0x18, 0x02, 0x20, 0x01, 0x2a, 0x80, 0x02]),
    value,
  ]);
  return Buffer.concat([
    Buffer.from([0x0a, HEADER.length]),
    HEADER,
    Buffer.from([0x12, ...varint(kv.length)]),
    kv,
    Buffer.from([0x20, 0x01]), // count = 1
  ]);
}

/** TxnResponse { header = 1, succeeded = 2, responses = 3 { response_range = 1 } }. */
function txnResponse(range: Buffer): Buffer {
  const op = Buffer.concat([Buffer.from([0x0a, ...varint(range.length)]), range]);
  return Buffer.concat([
    Buffer.from([0x0a, HEADER.length]),
    HEADER,
    Buffer.from([0x10, 0x01]),
    Buffer.from([0x1a, ...varint(op.length)]),
    op,
  ]);
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

function serve(): void {
  const server = new grpc.Server();
  const range = rangeResponse();
  const identity = (buf: Buffer): Buffer => buf;
  const unary =
    (answer: Buffer) =>
    (_call: unknown, callback: grpc.sendUnaryData<Buffer>): void =>
      callback(null, answer);
  server.register('/etcdserverpb.KV/Put', unary(PUT_RESPONSE), identity, identity, 'unary');
  server.register('/etcdserverpb.KV/Range', unary(range), identity, identity, 'unary');
  server.register('/etcdserverpb.KV/Txn', unary(txnResponse(range)), identity, identity, 'unary');
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error) throw error;
    process.send?.({ port });
  });
  // Exit with the parent: an orphaned null server would hold a core.
  process.on('disconnect', () => process.exit(0));
}

export interface NullServer {
  readonly endpoint: string;
  stop(): Promise<void>;
}

export function startNullServer(): Promise<NullServer> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve'], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stopChild(child, 1000);
      reject(new Error(`null server did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.once('exit', (code) => reject(new Error(`null server exited early (code ${code})`)));
    child.once('message', (message: { port: number }) => {
      clearTimeout(timer);
      resolve({ endpoint: `127.0.0.1:${message.port}`, stop: () => stopChild(child, 2000) });
    });
  });
}

if (process.argv.includes('--serve')) serve();
