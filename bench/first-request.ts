/**
 * Puts from two grpc-js clients of the same tandem cluster: one that sent its first request at
 * once (the connection is served natively by Node's HTTP/2) and one that idled past the
 * server's first-request wait (src/api/grpc/authority.ts, FIRST_REQUEST_WAIT_MS) before its
 * first request, so its connection is served through AuthorityRewriter, as a connection pool
 * opened ahead of use is. Cells alternate between the two: p50 at 1 in flight, puts/s and p50 at
 * 64 in flight. The two columns should be close; before TCP_NODELAY was set on every accepted
 * socket the rewritten connection's lone puts waited 40 ms each for a delayed ACK.
 *
 *   node --import tsx bench/first-request.ts [--members 1] [--cells 3] [--no-build]
 */
import { parseArgs } from 'node:util';
import { FIRST_REQUEST_WAIT_MS } from '../src/api/grpc/authority.js';
import { GrpcKvClient, runCell } from './load.js';
import { buildTandem, startTandemCluster } from './tandem-cluster.js';

const CONNECT_TIMEOUT_MS = 10_000;
const VALUE_BYTES = 256;
const CELL_MS = { lone: 2500, wide: 3000 };
const CELLS_MAX = 20;

function firstPut(client: GrpcKvClient): Promise<void> {
  return new Promise((resolve, reject) =>
    client.put(Buffer.from('first'), Buffer.from('v'), (e) => (e ? reject(e) : resolve())),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      members: { type: 'string', default: '1' },
      cells: { type: 'string', default: '3' },
      'no-build': { type: 'boolean', default: false },
    },
  });
  const size = Number(values.members);
  const cells = Number(values.cells);
  if (!(Number.isInteger(cells) && cells >= 1 && cells <= CELLS_MAX)) {
    throw new Error(`--cells must be 1..${CELLS_MAX}`);
  }
  if (!values['no-build']) {
    const warning = buildTandem();
    if (warning !== null) console.log(`build: ${warning}`);
  }
  const cluster = await startTandemCluster({ size });
  const native = new GrpcKvClient(cluster.endpoints);
  const rewritten = new GrpcKvClient(cluster.endpoints);
  try {
    await native.ready(CONNECT_TIMEOUT_MS);
    await firstPut(native);
    await rewritten.ready(CONNECT_TIMEOUT_MS);
    await new Promise((resolve) => setTimeout(resolve, FIRST_REQUEST_WAIT_MS + 500));
    await firstPut(rewritten);
    const clients = { native, rewritten };
    console.log(`${cluster.label}, ${size} member(s); each line: one cell per client`);
    for (let i = 0; i < cells; i++) {
      const order =
        i % 2 === 0 ? (['native', 'rewritten'] as const) : (['rewritten', 'native'] as const);
      const line: string[] = [];
      for (const name of order) {
        const cell = (inFlight: number, durationMs: number) =>
          runCell(clients[name], {
            workload: 'put',
            inFlight,
            opsMax: 1_000_000,
            durationMs,
            valueBytes: VALUE_BYTES,
            keyPrefix: `${name}/${i}/${inFlight}`,
          });
        const lone = await cell(1, CELL_MS.lone);
        const wide = await cell(64, CELL_MS.wide);
        if (lone.errors + wide.errors > 0)
          throw new Error(`${name}: ${lone.firstError ?? wide.firstError}`);
        line.push(
          `${name}: @1 p50 ${lone.p50Ms.toFixed(2)} ms, @64 ${wide.opsPerSec.toFixed(0)} puts/s p50 ${wide.p50Ms.toFixed(1)} ms`,
        );
      }
      console.log(`cell ${i}: ${line.join(' | ')}`);
    }
  } finally {
    native.close();
    rewritten.close();
    await cluster.stop();
  }
}

await main();
