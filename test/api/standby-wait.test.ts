/**
 * A member just started refuses clients until its first role check completes (tens of ms after
 * the leader's link is up). A unary call refused meanwhile waits up to ROLE_CHECK_WAIT_MS for
 * that check and is then served here, instead of being forwarded at once (the first forward
 * loads grpc-js and the .proto files: a restarted member answered its first reads 100–300 ms
 * later for it). Past the wait, or for a standby, the call is forwarded as before.
 *
 * The backend refuses with STANDBY until `confirm()`, and names a member to forward to that
 * listens nowhere: a forwarded call fails UNAVAILABLE, a call served here succeeds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startApiServer } from '../../src/api/server.js';
import { ROLE_CHECK_WAIT_MS } from '../../src/api/standby-forward.js';
import { freePort } from '../../src/cli/local-net.js';
import type { RangeRequest, RangeResponse } from '../../src/kv/api-types.js';
import type { WithHeader } from '../../src/server/contract.js';
import { ServerError } from '../../src/server/errors.js';
import { TestBackend, testLogger } from './harness.js';
import { unaryCall } from './raw-grpc.js';

const GRPC_OK = '0';
const GRPC_UNAVAILABLE = '14';

class StartingBackend extends TestBackend {
  private confirmed = false;
  private resolveCheck: () => void = () => {};
  private readonly check = new Promise<void>((resolve) => {
    this.resolveCheck = resolve;
  });

  constructor(
    private readonly deadUrl: string,
    private readonly standby: boolean,
  ) {
    super();
  }

  confirm(): void {
    this.confirmed = true;
    this.resolveCheck();
  }

  override async range(req: RangeRequest): Promise<WithHeader<RangeResponse>> {
    if (!this.confirmed || this.standby) {
      throw new ServerError('STANDBY', 'tandem: member n1 has not yet confirmed its role');
    }
    return super.range(req);
  }

  servingClientUrls(): readonly string[] {
    return [this.deadUrl];
  }

  roleCheckPending(): Promise<void> | null {
    return this.confirmed || this.standby ? null : this.check;
  }
}

async function withServer(
  backend: StartingBackend,
  body: (endpoint: string) => Promise<void>,
): Promise<void> {
  const server = await startApiServer({
    backend,
    listen: '127.0.0.1:0',
    logger: testLogger().logger,
  });
  try {
    await body(`127.0.0.1:${server.port}`);
  } finally {
    await server.close();
    backend.close();
  }
}

const RANGE_A = Buffer.from('0a0161', 'hex');

test('a call refused while the role check runs is served here once the check completes', async () => {
  const backend = new StartingBackend(`http://127.0.0.1:${await freePort()}`, false);
  await withServer(backend, async (endpoint) => {
    const answer = unaryCall(endpoint, '/etcdserverpb.KV/Range', RANGE_A);
    setTimeout(() => backend.confirm(), ROLE_CHECK_WAIT_MS / 6);
    assert.equal((await answer).status, GRPC_OK);
  });
});

test('past the wait, or on a standby, the refused call is forwarded', async () => {
  const deadUrl = `http://127.0.0.1:${await freePort()}`;
  const unconfirmed = new StartingBackend(deadUrl, false);
  await withServer(unconfirmed, async (endpoint) => {
    const startedMs = performance.now();
    const answer = await unaryCall(endpoint, '/etcdserverpb.KV/Range', RANGE_A);
    assert.equal(answer.status, GRPC_UNAVAILABLE, 'forwarded to the dead member');
    assert.ok(performance.now() - startedMs >= ROLE_CHECK_WAIT_MS - 5, 'it waited first');
  });
  const standby = new StartingBackend(deadUrl, true);
  await withServer(standby, async (endpoint) => {
    const answer = await unaryCall(endpoint, '/etcdserverpb.KV/Range', RANGE_A);
    assert.equal(answer.status, GRPC_UNAVAILABLE);
  });
});
