/**
 * Load-generator processes, so that the client is not the bottleneck: N children (this file,
 * forked under tsx), each with its own GrpcKvClient (its own HTTP/2 connections) to one
 * cluster's endpoints. A cell runs on several of them at once; the requests in flight and the
 * op budget are split between them, and their results are merged (load.ts mergeCellResults:
 * ops/s summed, latency histograms merged).
 *
 *   const pool = await GeneratorPool.start(endpoints, 2);
 *   const result = await pool.runCell({ workload: 'put', inFlight: 64, ... }, 2);
 *   await pool.close();
 *
 * Children exit when the parent disconnects (or dies: IPC closes), and close() stops them by
 * PID. Every wait is bounded.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stopChild } from '../src/cli/local-process.js';
import {
  type CellOptions,
  type CellResult,
  GrpcKvClient,
  mergeCellResults,
  READ_KEYS_MAX,
  REQUEST_TIMEOUT_MS_DEFAULT,
  runCell,
} from './load.js';

export const GENERATORS_MAX = 8;
const START_TIMEOUT_MS = 20_000;
const CONNECT_TIMEOUT_MS = 10_000;
/** A child's answer may come this long after its cell's own bound (duration + request timeout). */
const REPLY_SLACK_MS = 5000;
const STOP_TIMEOUT_MS = 2000;

/** The read keys of a cell: `${prefix}/${i}` for i < count, written before it. */
export interface ReadKeySet {
  readonly prefix: string;
  readonly count: number;
}

export function readKeyBytes(keys: ReadKeySet): Buffer[] {
  if (!(Number.isInteger(keys.count) && keys.count >= 1 && keys.count <= READ_KEYS_MAX)) {
    throw new Error(`read keys: count must be 1..${READ_KEYS_MAX}, got ${keys.count}`);
  }
  return Array.from({ length: keys.count }, (_, i) => Buffer.from(`${keys.prefix}/${i}`));
}

/** A cell as the pool runs it: read keys named by a set (built in each child), not sent. */
export type PoolCellOptions = Omit<CellOptions, 'readKeys'> & {
  readonly readKeys?: ReadKeySet;
};

type ToChild = { readonly type: 'cell'; readonly id: number; readonly options: PoolCellOptions };
type FromChild =
  | { readonly type: 'ready' }
  | { readonly type: 'result'; readonly id: number; readonly result: CellResult }
  | { readonly type: 'error'; readonly id?: number; readonly message: string };

/** `total` split into `parts` near-equal whole shares, larger first (some may be 0). */
export function split(total: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0),
  );
}

class Generator {
  private readonly waiting = new Map<number, (message: FromChild) => void>();
  private nextId = 0;

  constructor(readonly child: ChildProcess) {
    child.on('message', (message: FromChild) => {
      if (message.type === 'ready') return;
      const id = message.id;
      if (id === undefined) return;
      this.waiting.get(id)?.(message);
      this.waiting.delete(id);
    });
  }

  get pid(): number | null {
    return this.child.pid ?? null;
  }

  runCell(options: PoolCellOptions): Promise<CellResult> {
    const id = this.nextId++;
    const limitMs =
      options.durationMs +
      (options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT) +
      REPLY_SLACK_MS;
    return new Promise<CellResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`generator ${this.pid}: no result within ${limitMs} ms`));
      }, limitMs);
      const onExit = (): void => {
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(new Error(`generator ${this.pid} exited during a cell`));
      };
      this.child.once('exit', onExit);
      this.waiting.set(id, (message) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        if (message.type === 'result') resolve(message.result);
        else
          reject(new Error(`generator ${this.pid}: ${(message as { message: string }).message}`));
      });
      this.child.send({ type: 'cell', id, options } satisfies ToChild);
    });
  }
}

export class GeneratorPool {
  private closed = false;

  private constructor(private readonly generators: readonly Generator[]) {}

  /** Forks `count` generators connected to `endpoints`; resolves once all are connected. */
  static async start(endpoints: readonly string[], count: number): Promise<GeneratorPool> {
    if (!(Number.isInteger(count) && count >= 1 && count <= GENERATORS_MAX)) {
      throw new Error(`generators must be 1..${GENERATORS_MAX}, got ${count}`);
    }
    const children = Array.from({ length: count }, () =>
      fork(fileURLToPath(import.meta.url), ['--generator', endpoints.join(',')], {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    const pool = new GeneratorPool(children.map((child) => new Generator(child)));
    try {
      await Promise.all(children.map(waitReady));
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  get size(): number {
    return this.generators.length;
  }

  pids(): number[] {
    return this.generators.map((g) => g.pid).filter((pid) => pid !== null);
  }

  /**
   * Runs the cell on `count` generators at once (at most one per request in flight): each gets
   * a share of the requests in flight and of the op budget, its own put key prefix, and its own
   * starting point in the read keys. Merged result; a failed generator fails the cell.
   */
  async runCell(options: PoolCellOptions, count: number): Promise<CellResult> {
    if (this.closed) throw new Error('the generator pool is closed');
    if (!(Number.isInteger(count) && count >= 1 && count <= this.generators.length)) {
      throw new Error(`generators for a cell must be 1..${this.generators.length}, got ${count}`);
    }
    const inFlight = split(options.inFlight, Math.min(count, options.inFlight));
    const opsMax = split(options.opsMax, inFlight.length);
    const readKeyCount = options.readKeys?.count ?? 0;
    const results = await Promise.all(
      inFlight.map((share, i) =>
        this.generators[i]!.runCell({
          ...options,
          inFlight: share,
          opsMax: Math.max(1, opsMax[i]!),
          keyPrefix: inFlight.length === 1 ? options.keyPrefix : `${options.keyPrefix}/g${i}`,
          readKeyOffset: Math.floor((i * readKeyCount) / inFlight.length),
        }),
      ),
    );
    return mergeCellResults(results);
  }

  /** Disconnects every generator (they exit) and waits for each, by PID; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled(
      this.generators.map(async (g) => {
        if (g.child.connected) g.child.disconnect();
        await stopChild(g.child, STOP_TIMEOUT_MS);
      }),
    );
  }
}

function waitReady(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`generator ${child.pid} not connected within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`generator ${child.pid} exited at start (code ${code})`));
    });
    child.on('message', (message: FromChild) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve();
      } else if (message.type === 'error' && message.id === undefined) {
        clearTimeout(timer);
        reject(new Error(`generator ${child.pid}: ${message.message}`));
      }
    });
  });
}

/** The child: connect, then run cells as the parent asks, one at a time. */
async function serve(endpoints: readonly string[]): Promise<void> {
  const send = (message: FromChild): void => {
    process.send?.(message);
  };
  // Exit with the parent: an orphaned generator would load the cluster.
  process.on('disconnect', () => process.exit(0));
  const client = new GrpcKvClient(endpoints);
  try {
    await client.ready(CONNECT_TIMEOUT_MS);
  } catch (error) {
    send({ type: 'error', message: `cannot connect: ${(error as Error).message}` });
    process.exit(1);
  }
  const keySets = new Map<string, Buffer[]>();
  process.on('message', (message: ToChild) => {
    if (message.type !== 'cell') return;
    const { readKeys, ...rest } = message.options;
    let keys: Buffer[] | undefined;
    if (readKeys !== undefined) {
      const name = `${readKeys.prefix}#${readKeys.count}`;
      keys = keySets.get(name) ?? readKeyBytes(readKeys);
      keySets.set(name, keys);
    }
    runCell(client, {
      ...rest,
      ...(keys !== undefined && { readKeys: keys }),
    }).then(
      (result) => send({ type: 'result', id: message.id, result }),
      (error: Error) => send({ type: 'error', id: message.id, message: error.message }),
    );
  });
  send({ type: 'ready' });
}

const at = process.argv.indexOf('--generator');
if (at !== -1) await serve((process.argv[at + 1] ?? '').split(',').filter(Boolean));
