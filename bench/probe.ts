/**
 * Single puts with a deadline to a chosen endpoint: the launchers' "a put succeeds" check and
 * the failover writer. Unlike the load generator (bench/load.ts), every request here carries its
 * own deadline: a put to a member with no leader must fail fast so the next one can go elsewhere.
 */
import * as grpc from '@grpc/grpc-js';
import { encodePut } from './load.js';

export const PROBE_TIMEOUT_MS_MAX = 60_000;

const identity = (buf: Buffer): Buffer => buf;

export class ProbeClient {
  private readonly channels: grpc.Client[];

  constructor(readonly endpoints: readonly string[]) {
    if (endpoints.length === 0) throw new Error('ProbeClient: no endpoints');
    this.channels = endpoints.map(
      (endpoint) =>
        new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
          'grpc.use_local_subchannel_pool': 1,
          // Reconnect quickly to a restarted member (the default backoff grows to 120 s).
          'grpc.initial_reconnect_backoff_ms': 50,
          'grpc.max_reconnect_backoff_ms': 250,
        }),
    );
  }

  /**
   * Resolves once every channel is connected: a channel still backing off from a member that was
   * down fails puts at once (UNAVAILABLE) even after the member is back.
   */
  ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    return Promise.all(
      this.channels.map(
        (channel) =>
          new Promise<void>((resolve, reject) => {
            channel.waitForReady(deadline, (error) => (error ? reject(error) : resolve()));
          }),
      ),
    ).then(() => undefined);
  }

  /** Resolves null on success, else the error (a deadline, UNAVAILABLE, a server refusal). */
  put(
    endpoint: number,
    key: Uint8Array,
    value: Uint8Array,
    timeoutMs: number,
  ): Promise<Error | null> {
    const channel = this.channels[endpoint];
    if (channel === undefined) throw new Error(`no endpoint ${endpoint}`);
    if (!(timeoutMs >= 1 && timeoutMs <= PROBE_TIMEOUT_MS_MAX)) throw new Error('bad timeout');
    return new Promise((resolve) => {
      channel.makeUnaryRequest(
        '/etcdserverpb.KV/Put',
        identity,
        identity,
        encodePut(key, value),
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error) => resolve(error ?? null),
      );
    });
  }

  /** True once a put succeeds through any endpoint, trying each in turn. */
  async putAny(key: Uint8Array, value: Uint8Array, timeoutMs: number): Promise<Error | null> {
    let last: Error | null = null;
    for (let i = 0; i < this.channels.length; i++) {
      last = await this.put(i, key, value, timeoutMs);
      if (last === null) return null;
    }
    return last;
  }

  close(): void {
    for (const channel of this.channels) channel.close();
  }
}
