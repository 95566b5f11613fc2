/**
 * A member that serves no client traffic (a standby, or a member still confirming its role
 * after a start) forwards what clients send it to a member that does, the leader first, over
 * the etcd API itself, as etcd's gRPC proxy would: unary KV and Lease calls one by one, Watch and
 * LeaseKeepAlive streams relayed whole from the moment they open. So a client given only this
 * member's endpoint keeps working after a failover turned the member into a standby (issue 13:
 * the README's own demo did that to 127.0.0.1:2379), and a restarted member answers at once
 * instead of UNAVAILABLE. Standbys still never answer from their own data.
 *
 * A forwarded call carries `tandem-forwarded-by`; a member never forwards such a call again (a
 * stale registry cannot make two members bounce a call). A stream already open here when this
 * member stops serving is cancelled with the reason, as before (the client reopens it, and the
 * new one is relayed).
 *
 * grpc-js, the client, is imported on the first forward (it costs start-up time otherwise).
 */
import type {
  Client,
  ClientDuplexStream,
  Metadata as GrpcMetadata,
  ServiceError,
} from '@grpc/grpc-js';
import { ServerError } from '../server/errors.js';
import { type ServiceContext, wrapUnary } from './context.js';
import { FORWARDED_PROOF_KEY, FORWARDED_USER_KEY } from './forwarded-identity.js';
import {
  type BidiCall,
  bidiHandler,
  type CallContext,
  type MethodHandler,
  type ServiceHandlers,
} from './grpc/handlers.js';
import type { Metadata } from './grpc/metadata.js';
import { type CallStatus, ForwardedStatus, Status } from './grpc/status.js';
import {
  type GrpcModule,
  hostPort,
  loadGrpc,
  type MemberCallTls,
  memberCallCredentials,
} from './grpc-client.js';
import { type ServiceKey, serviceDefinition } from './proto.js';
import { METADATA_KEYS, REQUIRE_LEADER_KEY } from './request-options.js';

/** Set on a forwarded call to the forwarding member's name: never forwarded again. */
export const FORWARDED_BY_KEY = 'tandem-forwarded-by';
/** A forwarded call's deadline when the client gave none (etcd's request timeout is 5 s). */
export const STANDBY_FORWARD_TIMEOUT_MS = 10_000;
/** Requests of a relayed stream held while grpc-js loads; the client is paused past this. */
const RELAY_EARLY_MAX = 64;
/** Channels kept open to serving members, at most (a new leader adds one; all are dropped). */
const CHANNELS_MAX = 8;
/** The metadata a forwarded call keeps: what changes how the serving member answers. */
const FORWARDED_KEYS = [
  REQUIRE_LEADER_KEY,
  METADATA_KEYS.consistency,
  METADATA_KEYS.maxStalenessMs,
  METADATA_KEYS.ack,
  METADATA_KEYS.requestId,
  'token',
  'authorization',
] as const;

export class StandbyForwarder {
  private readonly channels = new Map<string, Client>();

  /**
   * `tls`: what this member presents to another's `https://` client port (grpc-client.ts).
   * `identityOf`: the user to state for a certificate-only client (AuthGate.forwardedIdentityOf),
   * since the member it forwards to sees this member's certificate, not the client's.
   */
  constructor(
    private readonly selfName: string,
    private readonly tls: MemberCallTls | null = null,
    private readonly identityOf: (
      call: CallContext,
    ) => { user: string; proof: string } | null = () => null,
  ) {}

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
    const metadata = this.metadataFor(grpc, call);
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

  /**
   * One bidirectional call (Watch, LeaseKeepAlive) relayed to the member at `url`, message by
   * message, with flow control both ways. Requests that arrive while grpc-js loads wait in a
   * bounded queue (the client is paused past it).
   */
  relay(service: ServiceKey, method: string, url: string, call: BidiCall<unknown, unknown>): void {
    const early: unknown[] = [];
    let upstream: ClientDuplexStream<unknown, unknown> | null = null;
    let done = false;
    let clientEnded = false;
    const finish = (status: CallStatus | null): void => {
      if (done) return;
      done = true;
      if (status === null) call.end();
      else call.fail(status);
    };
    call.on('data', (request) => {
      if (upstream === null) {
        early.push(request);
        if (early.length >= RELAY_EARLY_MAX) call.pause();
      } else if (!upstream.write(request)) {
        call.pause();
        upstream.once('drain', () => call.resume());
      }
    });
    call.on('end', () => {
      clientEnded = true;
      upstream?.end();
    });
    call.on('cancelled', () => {
      done = true;
      upstream?.cancel();
    });
    loadGrpc().then(
      (grpc) => {
        if (done) return;
        const definition = serviceDefinition(service)[method]!;
        const metadata = this.metadataFor(grpc, call);
        const up = this.channel(grpc, url).makeBidiStreamRequest(
          definition.path,
          definition.requestSerialize,
          definition.responseDeserialize,
          metadata,
          {},
        );
        upstream = up;
        up.on('data', (response: unknown) => {
          if (done) return;
          if (!call.write(response)) {
            up.pause();
            call.once('drain', () => up.resume());
          }
        });
        up.on('error', (error: ServiceError) =>
          finish({ code: error.code, details: error.details }),
        );
        up.on('end', () => finish(null));
        for (const request of early.splice(0)) up.write(request);
        call.resume();
        if (clientEnded) up.end();
      },
      (error: Error) => finish({ code: Status.UNAVAILABLE, details: error.message }),
    );
  }

  close(): void {
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }

  /** What the forwarded call carries: the client's options and token, who forwarded it. */
  private metadataFor(grpc: GrpcModule, call: CallContext): GrpcMetadata {
    const metadata = new grpc.Metadata();
    copyMetadata(call.metadata, metadata);
    metadata.set(FORWARDED_BY_KEY, this.selfName);
    const identity = this.identityOf(call);
    if (identity !== null) {
      metadata.set(FORWARDED_USER_KEY, identity.user);
      metadata.set(FORWARDED_PROOF_KEY, identity.proof);
    }
    return metadata;
  }

  private channel(grpc: GrpcModule, url: string): Client {
    let c = this.channels.get(url);
    if (c === undefined) {
      if (this.channels.size >= CHANNELS_MAX) this.close();
      c = new grpc.Client(hostPort(url), memberCallCredentials(grpc, url, this.tls));
      this.channels.set(url, c);
    }
    return c;
  }
}

/** Where to forward a call this member refused for serving no clients; null: do not. */
function refusedTo(ctx: ServiceContext, error: unknown, call: CallContext): string | null {
  if (!refusedHere(error, call)) return null;
  return ctx.backend.servingClientUrls?.()[0] ?? null;
}

/** Refused because this member serves no clients (a call forwarded here is never forwarded). */
function refusedHere(error: unknown, call: CallContext): boolean {
  if (!(error instanceof ServerError) || error.code !== 'STANDBY') return false;
  return call.metadata.get(FORWARDED_BY_KEY).length === 0;
}

/**
 * How long a unary call refused by a member just started waits for its first role check before
 * it is forwarded: the check completes a round trip or two after the leader's link is up (tens
 * of ms), and forwarding the first call costs more (grpc-js and the .proto files load then).
 */
export const ROLE_CHECK_WAIT_MS = 300;

/** True when this member's first role check completed within ROLE_CHECK_WAIT_MS (see above). */
async function roleCheckedSoon(ctx: ServiceContext): Promise<boolean> {
  const pending = ctx.backend.roleCheckPending?.() ?? null;
  if (pending === null) return false;
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ROLE_CHECK_WAIT_MS);
  });
  try {
    return await Promise.race([pending.then(() => true), waited]);
  } finally {
    clearTimeout(timer);
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
  // Bidirectional streams are checked as they open: refused here, relayed whole.
  const streams: Record<string, MethodHandler> = {};
  for (const [name, handler] of Object.entries(handlers)) {
    if (handler.kind !== 'bidi') {
      streams[name] = handler;
      continue;
    }
    const handle = handler.handle;
    streams[name] = bidiHandler((call: BidiCall<unknown, unknown>) => {
      let url: string | null = null;
      try {
        ctx.backend.assertServing?.();
      } catch (error) {
        url = refusedTo(ctx, error, call);
      }
      if (url === null) {
        handle(call); // serving here, or refusing as it does
        return;
      }
      ctx.logger.debug({ method: name, to: url }, 'api: relayed (this member serves none)');
      forwarder.relay(service, name, url, call);
    });
  }
  return wrapUnary(streams, (handle, name) => async (request, call) => {
    let refusal: unknown;
    try {
      return await handle(request, call);
    } catch (error) {
      refusal = error;
    }
    // Refused while the role was still unconfirmed, so refused before it started (a member
    // confirmed once in this incarnation never is unconfirmed again): safe to run it here now.
    if (refusedHere(refusal, call) && (await roleCheckedSoon(ctx))) {
      try {
        return await handle(request, call);
      } catch (error) {
        refusal = error;
      }
    }
    const url = refusedTo(ctx, refusal, call);
    if (url === null) throw refusal;
    ctx.logger.debug({ method: name, to: url }, 'api: forwarded (this member serves none)');
    return forwarder.forward(service, name, url, request, call);
  });
}

/**
 * `methods` of `handlers` (of `service`) that only the leader can answer and that etcd forwards
 * to its leader (MemberPromote: only the leader knows whether the learner is in sync): refused
 * here with "not leader", they are sent on to the leader with the caller's credentials, once
 * (a forwarded call is never forwarded again).
 */
export function withLeaderForwarding(
  ctx: ServiceContext,
  service: ServiceKey,
  handlers: ServiceHandlers,
  forwarder: StandbyForwarder,
  methods: readonly string[],
): ServiceHandlers {
  return wrapUnary(handlers, (handle, name) => {
    if (!methods.includes(name)) return handle;
    return async (request, call) => {
      try {
        return await handle(request, call);
      } catch (error) {
        if (!(error instanceof ServerError) || error.code !== 'NOT_LEADER') throw error;
        if (call.metadata.get(FORWARDED_BY_KEY).length > 0) throw error;
        const url = ctx.backend.leaderClientUrls?.()[0];
        if (url === undefined) throw error;
        ctx.logger.debug({ method: name, to: url }, 'api: forwarded to the leader');
        return forwarder.forward(service, name, url, request, call);
      }
    };
  });
}

function copyMetadata(from: Metadata, to: GrpcMetadata): void {
  for (const key of FORWARDED_KEYS) {
    for (const value of from.get(key)) if (typeof value === 'string') to.add(key, value);
  }
}
