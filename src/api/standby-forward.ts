/**
 * A member that serves no client traffic (a standby, or a member still confirming its role
 * after a start) answers unary KV and Lease calls by forwarding them to a member that does, the
 * leader first, over the etcd API itself, as etcd's gRPC proxy would. So a client given only
 * this member's endpoint keeps working after a failover turned the member into a standby
 * (issue 13: the README's own demo did that to 127.0.0.1:2379), and a restarted member answers
 * writes at once instead of UNAVAILABLE. Standbys still never answer from their own data.
 *
 * A forwarded call carries `tandem-forwarded-by`; a member never forwards such a call again (a
 * stale registry cannot make two members bounce a call). Streams (Watch, LeaseKeepAlive) are
 * still refused with UNAVAILABLE, which moves etcd clients to their next endpoint.
 *
 * grpc-js, the client, is imported on the first forward (it costs start-up time otherwise).
 */
import type { Client, Metadata as GrpcMetadata, ServiceError } from '@grpc/grpc-js';
import { ServerError } from '../server/errors.js';
import { type ServiceContext, wrapUnary } from './context.js';
import type { CallContext, ServiceHandlers } from './grpc/handlers.js';
import type { Metadata } from './grpc/metadata.js';
import { ForwardedStatus } from './grpc/status.js';
import { type GrpcModule, hostPort, loadGrpc } from './grpc-client.js';
import { type ServiceKey, serviceDefinition } from './proto.js';
import { METADATA_KEYS, REQUIRE_LEADER_KEY } from './request-options.js';

/** Set on a forwarded call to the forwarding member's name: never forwarded again. */
export const FORWARDED_BY_KEY = 'tandem-forwarded-by';
/** A forwarded call's deadline when the client gave none (etcd's request timeout is 5 s). */
export const STANDBY_FORWARD_TIMEOUT_MS = 10_000;
/** Channels kept open to serving members, at most (a new leader adds one; all are dropped). */
const CHANNELS_MAX = 8;
/** The metadata a forwarded call keeps: what changes how the serving member answers. */
const FORWARDED_KEYS = [
  REQUIRE_LEADER_KEY,
  METADATA_KEYS.consistency,
  METADATA_KEYS.maxStalenessMs,
  METADATA_KEYS.ack,
  'token',
  'authorization',
] as const;

export class StandbyForwarder {
  private readonly channels = new Map<string, Client>();

  constructor(private readonly selfName: string) {}

  /** One unary call, as `method` of `service`, to the member at `url`. */
  async forward(
    service: ServiceKey,
    method: string,
    url: string,
    request: unknown,
    call: CallContext,
  ): Promise<unknown> {
    const grpc = await loadGrpc();
    const definition = serviceDefinition(service)[method];
    if (definition === undefined) throw new Error(`no method ${method} in ${service}`);
    const metadata = new grpc.Metadata();
    copyMetadata(call.metadata, metadata);
    metadata.set(FORWARDED_BY_KEY, this.selfName);
    const channel = this.channel(grpc, url);
    return new Promise((resolve, reject) => {
      const pending = channel.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        request,
        metadata,
        { deadline: Date.now() + STANDBY_FORWARD_TIMEOUT_MS },
        (error: ServiceError | null, response?: unknown) => {
          call.signal.removeEventListener('abort', cancel);
          if (error === null) resolve(response);
          else reject(new ForwardedStatus({ code: error.code, details: error.details }));
        },
      );
      const cancel = (): void => pending.cancel();
      call.signal.addEventListener('abort', cancel, { once: true });
    });
  }

  close(): void {
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }

  private channel(grpc: GrpcModule, url: string): Client {
    let c = this.channels.get(url);
    if (c === undefined) {
      if (this.channels.size >= CHANNELS_MAX) this.close();
      c = new grpc.Client(hostPort(url), grpc.credentials.createInsecure());
      this.channels.set(url, c);
    }
    return c;
  }
}

/**
 * Every unary method of `handlers` (of `service`): run here; refused because this member serves
 * no clients, forwarded to the first member that does (see the header).
 */
export function withStandbyForwarding(
  ctx: ServiceContext,
  service: ServiceKey,
  handlers: ServiceHandlers,
  forwarder: StandbyForwarder,
): ServiceHandlers {
  return wrapUnary(handlers, (handle, name) => async (request, call) => {
    try {
      return await handle(request, call);
    } catch (error) {
      if (!(error instanceof ServerError) || error.code !== 'STANDBY') throw error;
      if (call.metadata.get(FORWARDED_BY_KEY).length > 0) throw error;
      const url = ctx.backend.servingClientUrls?.()[0];
      if (url === undefined) throw error;
      ctx.logger.debug({ method: name, to: url }, 'api: forwarded (this member serves none)');
      return forwarder.forward(service, name, url, request, call);
    }
  });
}

function copyMetadata(from: Metadata, to: GrpcMetadata): void {
  for (const key of FORWARDED_KEYS) {
    for (const value of from.get(key)) if (typeof value === 'string') to.add(key, value);
  }
}
