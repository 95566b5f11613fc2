/**
 * TEST HARNESS: real clients for integration tests — etcdctl (Debian etcd-client 3.4) run as a
 * bounded child process, and raw grpc-js clients of the etcd v3 services.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  type Client,
  credentials,
  Client as GrpcClient,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadEtcdProto } from '../../src/api/proto.js';

export const ETCDCTL = '/usr/bin/etcdctl';
const CTL_TIMEOUT_MS = 15_000;

/**
 * Why the tests that drive etcdctl cannot run here, or false: they skip naming the Debian package
 * (`.ci/run` installs it, so in CI they run).
 */
export const ETCDCTL_MISSING: string | false = existsSync(ETCDCTL)
  ? false
  : `needs ${ETCDCTL} (Debian etcd-client: apt-get install -y etcd-client)`;

export interface CtlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** etcdctl processes started and not yet exited: killed by `killCtls` (after hooks). */
const CTLS = new Set<ChildProcess>();

export function killCtls(): void {
  for (const child of CTLS) if (child.pid !== undefined) child.kill('SIGKILL');
  CTLS.clear();
}

function spawnCtl(endpoints: readonly string[], args: readonly string[]): ChildProcess {
  const child = spawn(
    ETCDCTL,
    [`--endpoints=${endpoints.join(',')}`, '--dial-timeout=3s', '--command-timeout=10s', ...args],
    { env: { ...process.env, ETCDCTL_API: '3' } },
  );
  CTLS.add(child);
  child.once('exit', () => CTLS.delete(child));
  return child;
}

/** Runs etcdctl to completion (bounded), with optional stdin. */
export function ctl(
  endpoints: readonly string[],
  args: readonly string[],
  input = '',
): Promise<CtlResult> {
  return new Promise((resolve, reject) => {
    const child = spawnCtl(endpoints, args);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`etcdctl ${args.join(' ')} timed out: ${stdout} ${stderr}`));
    }, CTL_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // etcdctl may exit before it reads its stdin (an error, no input needed): that EPIPE is no
    // failure of ours; its exit code and output say what happened.
    child.stdin!.on('error', () => {});
    child.stdin!.end(input);
  });
}

/** etcdctl that must succeed; returns stdout. */
export async function ctlOk(
  endpoints: readonly string[],
  args: readonly string[],
  input?: string,
): Promise<string> {
  const r = await ctl(endpoints, args, input);
  if (r.code !== 0) {
    throw new Error(`etcdctl ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/** A long-running etcdctl (watch, keep-alive); `until` resolves once stdout matches. */
export function ctlStream(endpoints: readonly string[], args: readonly string[]) {
  const child = spawnCtl(endpoints, args);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return {
    output: () => out,
    until(match: (out: string) => boolean, timeoutMs = CTL_TIMEOUT_MS): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (match(out)) resolve(out);
          else if (Date.now() > deadline || child.exitCode !== null) {
            reject(
              new Error(`etcdctl ${args.join(' ')}: no match in ${JSON.stringify(out)} ${err}`),
            );
          } else setTimeout(check, 50);
        };
        check();
      });
    },
    stop(): void {
      child.kill('SIGKILL');
    },
  };
}

type Callback = (err: ServiceError | null, res: Record<string, unknown>) => void;
type Unary = (req: object, md: Metadata, opts: { deadline: number }, cb: Callback) => void;
export type Rpc = Client & Record<string, Unary>;

/** Raw grpc-js clients of the etcd services at `endpoint` (host:port). */
export function grpcClients(endpoint: string) {
  const pkg = loadPackageDefinition(loadEtcdProto()) as unknown as {
    etcdserverpb: Record<string, ServiceClientConstructor>;
  };
  const make = (ctor: ServiceClientConstructor) =>
    new ctor(endpoint, credentials.createInsecure()) as unknown as Rpc;
  const raw = new GrpcClient(endpoint, credentials.createInsecure());
  const clients = {
    kv: make(pkg.etcdserverpb.KV!),
    lease: make(pkg.etcdserverpb.Lease!),
    maintenance: make(pkg.etcdserverpb.Maintenance!),
    auth: make(pkg.etcdserverpb.Auth!),
    raw,
    close(): void {
      for (const c of [clients.kv, clients.lease, clients.maintenance, clients.auth, raw]) {
        c.close();
      }
    },
  };
  return clients;
}

/** A unary call with a deadline. */
export function call(
  client: Rpc,
  method: string,
  req: object,
  timeoutMs = 5_000,
  metadata: Readonly<Record<string, string>> = {},
): Promise<Record<string, unknown>> {
  const md = new Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve, reject) => {
    client[method]!.call(client, req, md, { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** A unary call with raw request bytes (no protobuf encoding), for malformed input. */
export function rawUnary(raw: GrpcClient, path: string, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    raw.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      new Metadata(),
      { deadline: Date.now() + 5_000 },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  });
}
