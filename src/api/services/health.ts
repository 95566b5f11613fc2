/**
 * The standard gRPC health service. The server (service "") and each etcd service are SERVING
 * while the API server runs, NOT_SERVING once it is closing; an unknown service is NOT_FOUND
 * for Check and SERVICE_UNKNOWN for Watch, as the protocol specifies. (etcd's member-health
 * answer is etcdctl endpoint health, a linearizable read, which needs no help from here.)
 */
import { type ServiceContext, unary } from '../context.js';
import { ApiError } from '../errors.js';
import {
  type ServerStreamingCall,
  type ServiceHandlers,
  serverStreamHandler,
} from '../grpc/handlers.js';
import { PB_ENUMS, type PbHealthCheckRequest, SERVICE_NAMES } from '../proto.js';

/** SERVICE_UNKNOWN in HealthCheckResponse.ServingStatus. */
const SERVICE_UNKNOWN = 3;

export interface HealthState {
  /** False once the server is closing. */
  serving: boolean;
}

export function healthState(): HealthState {
  return { serving: true };
}

const KNOWN = new Set<string>(['', ...Object.values(SERVICE_NAMES)]);

function statusOf(state: HealthState, service: string): number | null {
  if (!KNOWN.has(service)) return null;
  return state.serving ? PB_ENUMS.healthServing : PB_ENUMS.healthNotServing;
}

export function healthService(ctx: ServiceContext, state: HealthState): ServiceHandlers {
  return {
    Check: unary(async (pb: PbHealthCheckRequest) => {
      const status = statusOf(state, pb.service);
      if (status === null) {
        throw new ApiError('UNKNOWN_SERVICE');
      }
      return { status };
    }),

    Watch: serverStreamHandler((call: ServerStreamingCall<PbHealthCheckRequest, unknown>) => {
      const status = statusOf(state, call.request.service);
      call.write({ status: status ?? SERVICE_UNKNOWN });
      // Open until the client leaves; closing the server answers NOT_SERVING and ends it.
      const end = () => {
        ctx.streams.delete(end);
        if (call.cancelled) return;
        if (status !== null) call.write({ status: PB_ENUMS.healthNotServing });
        call.end();
      };
      ctx.streams.add(end);
      call.on('cancelled', () => ctx.streams.delete(end));
    }),
  };
}
