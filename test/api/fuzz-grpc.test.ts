/**
 * FUZZ: every gRPC method of the client port (etcd's services, Lock, Election, health) gets random
 * and mutated protobuf bodies over a real connection to one API server (harness.ts, the real kv
 * layer). Every call ends with a status (none hangs past its deadline, none crashes the server);
 * a failure's status is a clear one (never INTERNAL except for an undecodable body, never a bug
 * logged); a call that fails changes no state (the store's revision is unchanged).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../../src/api/proto.js';
import { startHarness } from './harness.js';

const CALL_DEADLINE_MS = 3_000;
/** A stream that is still open this long after its request is cancelled (it is alive). */
const STREAM_OPEN_MS = 150;
const RUNS_PER_METHOD = 25;
/**
 * Methods that wait by design (a Lock or a Campaign queues behind the holder, as on etcd): a
 * deadline is their answer, and what they wrote (their waiting key) they remove as they give
 * up, after the call ends. They run last, so that cleanup (and the expiry of the 60 s leases they
 * grant for requests without one) falls after every other method's checks.
 */
const BLOCKING = new Set(['/v3lockpb.Lock/Lock', '/v3electionpb.Election/Campaign']);
const BLOCKING_DEADLINE_MS = 500;
const QUIET_MS = 150;
const QUIET_WAIT_MS = 5_000;

interface Method {
  readonly path: string;
  readonly requestType: protobuf.Type;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

function allMethods(): Method[] {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => `${PROTO_DIR}/${target}`;
  root.loadSync(['rpc.proto', 'health.proto', 'v3lock.proto', 'v3election.proto'], {
    keepCase: true,
  });
  root.resolveAll();
  const out: Method[] = [];
  const visit = (ns: protobuf.NamespaceBase): void => {
    for (const child of ns.nestedArray) {
      if (child instanceof protobuf.Service) {
        for (const m of child.methodsArray) {
          out.push({
            path: `/${child.fullName.slice(1)}/${m.name}`,
            requestType: m.resolvedRequestType!,
            requestStream: m.requestStream === true,
            responseStream: m.responseStream === true,
          });
        }
      } else if (child instanceof protobuf.Namespace) visit(child);
    }
  };
  visit(root);
  return [...out.filter((m) => !BLOCKING.has(m.path)), ...out.filter((m) => BLOCKING.has(m.path))];
}

/** A request with every top-level field set to a plain value, encoded: the seed to mutate. */
function sample(type: protobuf.Type): Uint8Array {
  const obj: Record<string, unknown> = {};
  for (const f of type.fieldsArray) {
    if (f.repeated || f.resolvedType instanceof protobuf.Type) continue;
    if (f.resolvedType instanceof protobuf.Enum) obj[f.name] = 1;
    else if (f.type === 'bytes') obj[f.name] = Buffer.from('fz/k');
    else if (f.type === 'string') obj[f.name] = 'fz';
    else if (f.type === 'bool') obj[f.name] = true;
    else obj[f.name] = 1;
  }
  return type.encode(type.fromObject(obj)).finish();
}

/** Random bytes, or the sample with bytes flipped, cut or inserted. */
function bodies(seed: Uint8Array): fc.Arbitrary<Uint8Array> {
  const mutated = fc
    .tuple(
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      fc.nat(),
      fc.uint8Array({ maxLength: 8 }),
    )
    .map(([flips, cut, inserted]) => {
      const b = Uint8Array.from(seed);
      for (const [at, x] of flips) if (b.length > 0) b[at % b.length]! ^= x;
      const keep = b.length === 0 ? 0 : cut % (b.length + 1);
      return Uint8Array.from([...b.subarray(0, keep), ...inserted, ...b.subarray(keep)]);
    });
  return fc.oneof(fc.uint8Array({ maxLength: 64 }), mutated);
}

type Outcome = { ok: true } | { ok: false; err: ServiceError };

const raw = (b: Uint8Array) => Buffer.from(b);
const id = (b: Buffer) => b;

function callRaw(client: Client, m: Method, body: Uint8Array): Promise<Outcome> {
  const deadlineMs = BLOCKING.has(m.path) ? BLOCKING_DEADLINE_MS : CALL_DEADLINE_MS;
  const options = { deadline: Date.now() + deadlineMs };
  return new Promise((resolve) => {
    const settle = (err: ServiceError | null) =>
      resolve(err === null ? { ok: true } : { ok: false, err });
    if (!m.requestStream && !m.responseStream) {
      client.makeUnaryRequest(m.path, raw, id, body, new Metadata(), options, (err) =>
        settle(err ?? null),
      );
      return;
    }
    const stream = m.requestStream
      ? client.makeBidiStreamRequest(m.path, raw, id, new Metadata(), options)
      : client.makeServerStreamRequest(m.path, raw, id, body, new Metadata(), options);
    if (m.requestStream) {
      const duplex = stream as ReturnType<Client['makeBidiStreamRequest']>;
      duplex.write(body);
      duplex.end();
    }
    stream.on('data', () => {});
    // An open stream (a watch, a keep-alive, an observer) is cancelled by us: that is no failure.
    const timer = setTimeout(() => stream.cancel(), STREAM_OPEN_MS);
    stream.on('error', (err: ServiceError) => {
      clearTimeout(timer);
      settle(err.code === status.CANCELLED ? null : err);
    });
    stream.on('status', (s: { code: number }) => {
      if (s.code === status.OK) {
        clearTimeout(timer);
        settle(null);
      }
    });
  });
}

describe('fuzz: every gRPC method, random and mutated bodies', { timeout: 300_000 }, () => {
  let h: Awaited<ReturnType<typeof startHarness>>;
  let client: Client;
  const methods = allMethods();

  before(async () => {
    h = await startHarness();
    client = new Client(h.endpoint, credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    await h?.close();
  });

  /** Until the revision has not moved for QUIET_MS (a given-up waiter's cleanup is done). */
  async function quiet(): Promise<void> {
    const deadline = Date.now() + QUIET_WAIT_MS;
    let last = h.backend.header().revision;
    for (;;) {
      await new Promise((r) => setTimeout(r, QUIET_MS));
      const now = h.backend.header().revision;
      if (now === last) return;
      assert.ok(Date.now() < deadline, 'the store kept changing');
      last = now;
    }
  }

  test('the methods are all there', () => {
    const paths = methods.map((m) => m.path);
    for (const p of [
      '/etcdserverpb.KV/Txn',
      '/v3lockpb.Lock/Lock',
      '/v3electionpb.Election/Observe',
    ]) {
      assert.ok(paths.includes(p), p);
    }
    assert.ok(methods.length >= 50, `${methods.length} methods`);
  });

  for (const m of methods) {
    test(m.path, { timeout: 120_000 }, async () => {
      const seed = sample(m.requestType);
      await fc.assert(
        fc.asyncProperty(bodies(seed), async (body) => {
          if (BLOCKING.has(m.path)) await quiet();
          const revision = h.backend.header().revision;
          const out = await callRaw(client, m, body);
          if (out.ok) return;
          const { code, details } = out.err;
          if (BLOCKING.has(m.path) && code === status.DEADLINE_EXCEEDED) return;
          assert.notEqual(code, status.DEADLINE_EXCEEDED, `${m.path} hung: ${details}`);
          assert.notEqual(code, status.UNAVAILABLE, `${m.path}: server gone? ${details}`);
          if (code === status.INTERNAL) {
            assert.match(details, /deserializ|parse|decode/i, `${m.path}: INTERNAL ${details}`);
          }
          assert.ok(details.length > 0, `${m.path}: status ${code} without a message`);
          assert.equal(h.backend.header().revision, revision, `${m.path} failed and wrote`);
        }),
        { numRuns: RUNS_PER_METHOD },
      );
      assert.deepEqual(h.errors, [], 'no handler bug logged');
    });
  }
});
