/**
 * tandem's own unary service beside etcd's on the client port: a follower that committed an
 * ack=all write asks the leader (the only member that sees every voter's progress) to wait until
 * every voter persisted its index. JSON bodies: one small internal call, no proto to maintain.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { ServerError } from '../../server/errors.js';
import { type ServiceContext, unary } from '../context.js';
import type { ServiceHandlers } from '../grpc/handlers.js';

export const ACK_AWAIT_PATH = '/tandem.v1.Ack/AwaitAllVoters';

export interface AwaitAllVotersRequest {
  readonly index: number;
}

const toJson = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const fromJson = (bytes: Buffer): unknown => JSON.parse(bytes.toString('utf8'));

export const ACK_SERVICE: ServiceDefinition = {
  AwaitAllVoters: {
    path: ACK_AWAIT_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: toJson,
    requestDeserialize: fromJson,
    responseSerialize: toJson,
    responseDeserialize: fromJson,
  },
};

export function ackService(ctx: ServiceContext): ServiceHandlers {
  return {
    AwaitAllVoters: unary(async (req: AwaitAllVotersRequest) => {
      const index = req?.index;
      if (!Number.isSafeInteger(index) || index < 1) {
        throw new ServerError('UNHEALTHY', `tandem: bad ack index ${String(index)}`);
      }
      if (ctx.backend.awaitAllVoters === undefined) {
        throw new ServerError('UNHEALTHY', 'tandem: ack=all is not served here');
      }
      await ctx.backend.awaitAllVoters(index);
      return {};
    }),
  };
}
