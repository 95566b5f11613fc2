/**
 * The load generator's own cost, measured against the null server (bench/null-server.ts, its
 * own process): the hand-written grpc-js client used by bench/load.ts beside the `etcd3` npm
 * client doing the same requests. The faster one is the one the benchmarks use; the rate
 * either reaches here is the most it can offer a real server on this machine.
 *
 *   node --import tsx bench/overhead.ts          (bounded: about 40 s)
 */
import { Etcd3 } from 'etcd3';
import {
  GrpcKvClient,
  type KvClient,
  markdownTable,
  type Row,
  runCell,
  WORKLOADS,
  type Workload,
} from './load.js';
import { startNullServer } from './null-server.js';

/** The `etcd3` client behind the generator's callback interface, for comparison only. */
export class Etcd3KvClient implements KvClient {
  private readonly client: Etcd3;

  constructor(endpoints: readonly string[]) {
    this.client = new Etcd3({ hosts: endpoints.map((e) => `http://${e}`) });
  }

  put(key: Uint8Array, value: Uint8Array, done: (error: Error | null) => void): void {
    this.client
      .put(Buffer.from(key))
      .value(Buffer.from(value))
      .then(
        () => done(null),
        (error: Error) => done(error),
      );
  }

  get(
    key: Uint8Array,
    serializable: boolean,
    done: (error: Error | null, found: number) => void,
  ): void {
    this.client
      .get(Buffer.from(key).toString())
      .serializable(serializable)
      .buffer()
      .then(
        (value) => done(null, value === null ? 0 : 1),
        (error: Error) => done(error, 0),
      );
  }

  txnRead(key: Uint8Array, done: (error: Error | null, found: number) => void): void {
    const k = Buffer.from(key);
    this.client
      .if(k, 'Mod', '>', 0)
      .then(this.client.get(k.toString()))
      .commit()
      .then(
        (txn) => {
          const kvs = txn.responses[0]?.response_range?.kvs.length ?? 0;
          done(txn.succeeded ? null : new Error('txn compare failed'), kvs);
        },
        (error: Error) => done(error, 0),
      );
  }

  close(): void {
    this.client.close();
  }
}

export interface OverheadOptions {
  readonly inFlight: readonly number[];
  readonly cellMs: number;
  readonly opsMax: number;
  /** Also measure the etcd3 client at these in-flight counts. */
  readonly etcd3InFlight: readonly number[];
}

/** Generator ceiling rows: hand-written client at each in-flight count, etcd3 for comparison. */
export async function measureOverhead(options: OverheadOptions): Promise<Row[]> {
  const server = await startNullServer();
  const rows: Row[] = [];
  try {
    const candidates: [string, KvClient, readonly number[]][] = [
      [
        'null server · grpc-js + hand-written pb',
        new GrpcKvClient([server.endpoint]),
        options.inFlight,
      ],
      ['null server · etcd3 client', new Etcd3KvClient([server.endpoint]), options.etcd3InFlight],
    ];
    for (const [target, client, inFlights] of candidates) {
      if (client instanceof GrpcKvClient) await client.ready(5000);
      const keys = [Buffer.from('bench/key')];
      const cell = (workload: Workload, inFlight: number, durationMs: number) =>
        runCell(client, {
          workload,
          inFlight,
          durationMs,
          opsMax: options.opsMax,
          valueBytes: 256,
          keyPrefix: 'bench/overhead',
          readKeys: keys,
        });
      await cell('put', 16, 300); // warm-up: connections, JIT
      for (const workload of WORKLOADS) {
        for (const inFlight of inFlights) {
          rows.push({ target, ...(await cell(workload, inFlight, options.cellMs)) });
        }
      }
      client.close();
    }
  } finally {
    await server.stop();
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await measureOverhead({
    inFlight: [1, 16, 64, 256],
    etcd3InFlight: [1, 16, 64, 256],
    cellMs: 1000,
    opsMax: 1_000_000,
  });
  console.log(markdownTable(rows));
}
