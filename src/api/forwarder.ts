/**
 * Forwards the lease operations only the leader can answer (keep-alive, time-to-live: lease
 * deadlines live in the leader's memory, not in the log) from a follower to the leader's client
 * endpoint over the etcd API itself — as etcd forwards them to the leader over HTTP.
 *
 * One gRPC channel per leader URL, kept while it is the leader; a bounded deadline per call.
 * An `https://` leader URL is called over TLS with this member's credentials (grpc-client.ts).
 * grpc-js is imported on the first forward: it costs about 90 ms of a member's start-up, and a
 * leader, or a follower whose clients never need the leader, never loads it.
 */
import type { Client } from '@grpc/grpc-js';
import { LeaseError, LeaseErrorCode } from '../kv/lease/errors.js';
import type { LeaseId } from '../kv/types.js';
import type { LeaderForwarder, LeaseTimeToLiveResult } from '../server/contract.js';
import { ServerError } from '../server/errors.js';
import {
  type GrpcModule,
  hostPort,
  loadGrpc,
  type MemberCallTls,
  memberCallCredentials,
} from './grpc-client.js';
import { serviceDefinition } from './proto.js';
import { ACK_SERVICE, type AwaitAllVotersRequest } from './services/ack.js';

export const FORWARD_TIMEOUT_MS = 3000;
const CLIENTS_MAX = 8;

type UnaryCall = (
  request: unknown,
  metadata: import('@grpc/grpc-js').Metadata,
  options: { deadline: number },
  callback: (
    error: (Error & { code?: number; details?: string }) | null,
    response?: unknown,
  ) => void,
) => void;

export class GrpcLeaderForwarder implements LeaderForwarder {
  private readonly clients = new Map<string, Client>();
  private readonly ackClients = new Map<string, Client>();

  /** `tls`: what this member presents to another's client port; null: plaintext only. */
  constructor(private readonly tls: MemberCallTls | null = null) {}

  async leaseKeepAlive(leaderClientUrls: readonly string[], id: LeaseId): Promise<number> {
    const response = (await this.call(leaderClientUrls, 'LeaseKeepAlive', {
      ID: id.toString(),
    })) as {
      TTL: string;
    };
    const ttl = Number(response.TTL);
    if (ttl <= 0) throw new LeaseError(LeaseErrorCode.NotFound, id);
    return ttl;
  }

  async leaseTimeToLive(
    leaderClientUrls: readonly string[],
    id: LeaseId,
    withKeys: boolean,
  ): Promise<LeaseTimeToLiveResult> {
    const r = (await this.call(leaderClientUrls, 'LeaseTimeToLive', {
      ID: id.toString(),
      keys: withKeys,
    })) as { TTL: string; grantedTTL: string; keys: Buffer[] };
    return {
      id,
      ttlSeconds: Number(r.TTL),
      grantedTtlSeconds: Number(r.grantedTTL),
      keys: r.keys ?? [],
    };
  }

  /** ack=all through a follower: the leader's Ack service waits for every voter. */
  async awaitAllVoters(
    leaderClientUrls: readonly string[],
    index: number,
    timeoutMs: number,
  ): Promise<void> {
    const url = leaderClientUrls[0];
    if (url === undefined) throw new ServerError('NO_LEADER', 'etcdserver: no leader');
    const grpc = await loadGrpc();
    const { Metadata, makeGenericClientConstructor } = grpc;
    let c = this.ackClients.get(url);
    if (c === undefined) {
      if (this.ackClients.size >= CLIENTS_MAX) this.close();
      const Ctor = makeGenericClientConstructor(ACK_SERVICE, 'Ack');
      c = new Ctor(hostPort(url), memberCallCredentials(grpc, url, this.tls));
      this.ackClients.set(url, c);
    }
    const client = c as unknown as Record<string, UnaryCall>;
    // The leader gives up at timeoutMs and says why; this deadline only bounds a lost leader.
    const deadline = Date.now() + timeoutMs + FORWARD_TIMEOUT_MS;
    const request: AwaitAllVotersRequest = { index };
    return new Promise((resolve, reject) => {
      client.AwaitAllVoters!(request, new Metadata(), { deadline }, (error) => {
        if (error === null) resolve();
        else {
          const details = error.details ?? error.message;
          reject(
            details.includes('ack=all')
              ? new ServerError('WRITE_ACK_TIMEOUT', details)
              : new ServerError(
                  'WRITE_ACK_TIMEOUT',
                  `tandem: write committed at index ${index}, but the leader could not confirm every voter has it (ack=all): ${details}`,
                ),
          );
        }
      });
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    for (const c of this.ackClients.values()) c.close();
    this.ackClients.clear();
  }

  private client(grpc: GrpcModule, url: string): Client {
    const { makeGenericClientConstructor } = grpc;
    let c = this.clients.get(url);
    if (c === undefined) {
      if (this.clients.size >= CLIENTS_MAX) this.close();
      const Ctor = makeGenericClientConstructor(serviceDefinition('lease'), 'Lease');
      c = new Ctor(hostPort(url), memberCallCredentials(grpc, url, this.tls));
      this.clients.set(url, c);
    }
    return c;
  }

  private async call(urls: readonly string[], method: string, request: unknown): Promise<unknown> {
    const url = urls[0];
    if (url === undefined) throw new ServerError('NO_LEADER', 'etcdserver: no leader');
    const grpc = await loadGrpc();
    const { Metadata } = grpc;
    // LeaseKeepAlive is a stream in the proto; the leader answers a unary-shaped call on the
    // generic client through its streaming method, so we open a one-message stream.
    const client = this.client(grpc, url) as unknown as Record<string, UnaryCall> & {
      LeaseKeepAlive(
        metadata: InstanceType<GrpcModule['Metadata']>,
        options: { deadline: number },
      ): {
        write(msg: unknown): void;
        end(): void;
        on(event: string, fn: (arg: never) => void): void;
      };
    };
    const deadline = Date.now() + FORWARD_TIMEOUT_MS;
    if (method === 'LeaseKeepAlive') {
      return new Promise((resolve, reject) => {
        const stream = client.LeaseKeepAlive(new Metadata(), { deadline });
        let done = false;
        stream.on('data', (msg: never) => {
          done = true;
          resolve(msg);
          stream.end();
        });
        stream.on('error', (error: never) => {
          if (!done) reject(forwardError(error));
        });
        stream.on('end', () => {
          if (!done) reject(new ServerError('LEADER_CHANGED', 'etcdserver: leader changed'));
        });
        stream.write(request);
      });
    }
    return new Promise((resolve, reject) => {
      client[method]!(request, new Metadata(), { deadline }, (error, response) =>
        error === null ? resolve(response) : reject(forwardError(error)),
      );
    });
  }
}

function forwardError(error: Error & { details?: string }): Error {
  const details = error.details ?? error.message;
  if (details.includes('requested lease not found')) return new LeaseError(LeaseErrorCode.NotFound);
  return new ServerError('LEADER_CHANGED', `etcdserver: leader changed (${details})`);
}
