/**
 * TEST HARNESS: one scripted member for the client's tests, on real TCP (loopback): our gRPC
 * server answering /status (a one-member topology naming itself leader) and the KV service's
 * Put with a script; every Put's metadata is recorded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SecureContextOptions } from 'node:tls';
import { type CallContext, describeService, unaryHandler } from '../../src/api/grpc/handlers.js';
import { GrpcServer } from '../../src/api/grpc/server.js';
import { type CallStatus, Status } from '../../src/api/grpc/status.js';
import { loadEtcdProto, serviceDefinition } from '../../src/api/proto.js';

export interface PutCall {
  readonly key: string;
  readonly metadata: Record<string, string>;
}

/** What a Put answers: a revision, or a failure status. */
export type PutScript = (call: PutCall, n: number) => { revision: number } | CallStatus;

export interface FakeMember {
  readonly url: string;
  readonly puts: PutCall[];
  close(): Promise<void>;
}

const SILENT = { debug() {}, info() {}, warn() {}, error() {} };

export async function startFakeMember(
  script: PutScript,
  tls?: { readonly cert: string; readonly key: string; readonly ca?: string },
  onMetadata?: (metadata: Record<string, string>) => CallStatus | null,
): Promise<FakeMember> {
  loadEtcdProto();
  const puts: PutCall[] = [];
  let url = '';
  const scheme = tls === undefined ? 'http' : 'https';
  const server = new GrpcServer({
    receiveMessageBytesMax: 4 << 20,
    sendMessageBytesMax: 4 << 20,
    concurrentStreamsMax: 100,
    keepaliveTimeMs: 60_000,
    keepaliveTimeoutMs: 20_000,
    ...(tls === undefined ? {} : { tls: tls as SecureContextOptions & typeof tls }),
    http: {
      http1: (req: IncomingMessage, res: ServerResponse) => {
        if (req.url !== '/status') {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            memberId: '1',
            leader: '1',
            isLeader: true,
            term: 1,
            registry: [{ id: '1', name: 'fake', clientUrls: [url], role: 'voter' }],
          }),
        );
      },
      http2: (stream) => {
        stream.respond({ ':status': 404 });
        stream.end();
      },
    },
    statusOf: (err: unknown): CallStatus =>
      typeof err === 'object' && err !== null && 'code' in err
        ? (err as CallStatus)
        : { code: Status.INTERNAL, details: String(err) },
    logger: SILENT,
  });
  const metadataOf = (call: CallContext): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const key of ['tandem-request-id', 'tandem-ack', 'token', 'authorization']) {
      const v = call.metadata.get(key)[0];
      if (typeof v === 'string') out[key] = v;
    }
    return out;
  };
  const kv = serviceDefinition('kv');
  const header = (revision: number) => ({
    clusterId: '1',
    memberId: '1',
    revision: String(revision),
    raftTerm: '1',
  });
  const unimplemented = Object.fromEntries(
    Object.keys(kv).map((name) => [
      name,
      unaryHandler(async () => {
        throw { code: Status.UNIMPLEMENTED, details: `fake: no ${name}` };
      }),
    ]),
  );
  server.addService(describeService(kv), {
    ...unimplemented,
    Put: unaryHandler(async (req: { key: Buffer }, call: CallContext) => {
      const metadata = metadataOf(call);
      const refused = onMetadata?.(metadata) ?? null;
      if (refused !== null) throw refused;
      const c = { key: Buffer.from(req.key).toString(), metadata };
      puts.push(c);
      const r = script(c, puts.length);
      if ('code' in r) throw r;
      return { header: header(r.revision), prevKv: null };
    }),
    Range: unaryHandler(async (_req: unknown, call: CallContext) => {
      const refused = onMetadata?.(metadataOf(call)) ?? null;
      if (refused !== null) throw refused;
      return { header: header(1), kvs: [], more: false, count: '0' };
    }),
  });
  const port = await server.listen('127.0.0.1:0');
  url = `${scheme}://127.0.0.1:${port}`;
  return { url, puts, close: () => server.close(100) };
}
