/**
 * etcd's Lease service. Keep-alives are a bidirectional stream; as etcd's leaseKeepAlive, each
 * request is renewed in turn (the next is read only once the previous answer is written and the
 * write buffer has room), and a lease that does not exist answers TTL 0 rather than failing the
 * stream, so a client keeping several leases alive loses only the one that expired.
 */
import { TandemError } from '../../util/errors.js';
import {
  plainOptions,
  type ServiceContext,
  statusFor,
  unary,
  withLeaderCheck,
} from '../context.js';
import { headerToPb, int64Out, leaseIdField, uintField } from '../convert.js';
import { type BidiCall, bidiHandler, type ServiceHandlers } from '../grpc/handlers.js';
import type { PbLeaseGrantRequest, PbLeaseIdRequest, PbLeaseTimeToLiveRequest } from '../proto.js';

/** Codes after which a keep-alive answers TTL 0 (etcd: ErrLeaseNotFound → TTL 0, no error). */
const LEASE_GONE = new Set(['LEASE_NOT_FOUND', 'LEASE_EXPIRED']);

type KeepAliveCall = BidiCall<PbLeaseIdRequest, unknown>;

class KeepAliveSession {
  private readonly queue: PbLeaseIdRequest[] = [];
  private running = false;
  private closed = false;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly call: KeepAliveCall,
  ) {
    ctx.streams.add(this.end);
    call.on('data', (request: PbLeaseIdRequest) => {
      this.queue.push(request);
      call.pause(); // one renewal at a time per stream
      void this.run();
    });
    call.on('end', () => {
      // The client half-closed: answer what is in flight, then end the call, as etcd.
      if (!this.running && this.queue.length === 0) this.finish();
    });
    call.on('cancelled', () => this.close());
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const request = this.queue.shift()!;
        const room = this.call.write(await this.renew(request));
        if (!room && !this.closed) await this.drained();
      }
    } catch (err) {
      this.end(err);
      return;
    } finally {
      this.running = false;
    }
    if (this.closed) return;
    if (this.call.readableEnded) this.finish();
    else this.call.resume();
  }

  private async renew(request: PbLeaseIdRequest) {
    const id = leaseIdField(request.ID, 'LeaseKeepAliveRequest.ID');
    // The header is taken before renewing, as etcd does: its revision is then never later than
    // the renewal, so a client cannot see a keep-alive succeed after the revoke's revision.
    const header = headerToPb(this.ctx.backend.header());
    let ttl: number;
    try {
      const opts = plainOptions(this.ctx, this.call);
      ttl = await this.ctx.backend.leaseKeepAlive(id, opts);
    } catch (err) {
      if (!(err instanceof TandemError) || !LEASE_GONE.has(err.code)) throw err;
      ttl = 0;
    }
    return { header, ID: int64Out(id), TTL: ttl };
  }

  /** Room to write again, or the call is gone. */
  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.call.off('drain', done);
        this.call.off('cancelled', done);
        resolve();
      };
      this.call.once('drain', done);
      this.call.once('cancelled', done);
    });
  }

  /** Ends the call with the status for `err`. */
  private readonly end = (err: unknown): void => {
    if (this.closed) return;
    const status = statusFor(this.ctx, 'LeaseKeepAlive', err);
    this.close();
    this.call.fail(status);
  };

  private finish(): void {
    if (this.closed) return;
    this.close();
    this.call.end();
  }

  private close(): void {
    this.closed = true;
    this.ctx.streams.delete(this.end);
    this.queue.length = 0;
  }
}

export function leaseService(ctx: ServiceContext): ServiceHandlers {
  const { backend } = ctx;
  return withLeaderCheck(ctx, {
    LeaseGrant: unary(async (pb: PbLeaseGrantRequest, call) => {
      const ttl = uintField(pb.TTL, 'LeaseGrantRequest.TTL');
      const id = leaseIdField(pb.ID, 'LeaseGrantRequest.ID');
      const granted = await backend.leaseGrant(id, ttl, plainOptions(ctx, call));
      return {
        header: headerToPb(backend.header()),
        ID: int64Out(granted.id),
        TTL: granted.ttlSeconds,
        error: '',
      };
    }),

    LeaseRevoke: unary(async (pb: PbLeaseIdRequest, call) => {
      const id = leaseIdField(pb.ID, 'LeaseRevokeRequest.ID');
      let opts = plainOptions(ctx, call);
      if (ctx.auth.enabled()) {
        // etcd's checkLeasePuts: write on every attached key (root on anything).
        const who = await ctx.auth.credentials(call);
        ctx.auth.checkLeasePuts(who, id);
        if (who.revision !== 0) opts = { ...opts, auth: who };
      }
      await backend.leaseRevoke(id, opts);
      return { header: headerToPb(backend.header()) };
    }),

    LeaseKeepAlive: bidiHandler((call: KeepAliveCall) => {
      new KeepAliveSession(ctx, call);
    }),

    LeaseTimeToLive: unary(async (pb: PbLeaseTimeToLiveRequest, call) => {
      const id = leaseIdField(pb.ID, 'LeaseTimeToLiveRequest.ID');
      const opts = plainOptions(ctx, call);
      // etcd's checkLeaseTimeToLive: with keys asked for, read on each of them.
      const who = pb.keys && ctx.auth.enabled() ? await ctx.auth.credentials(call) : null;
      if (who !== null) ctx.auth.checkLeaseReads(who, id);
      const ttl = await backend.leaseTimeToLive(id, pb.keys, opts);
      if (who !== null) ctx.auth.checkStillCurrent(who);
      return {
        header: headerToPb(backend.header()),
        ID: int64Out(ttl.id),
        TTL: ttl.ttlSeconds,
        grantedTTL: ttl.grantedTtlSeconds,
        keys: ttl.keys,
      };
    }),

    LeaseLeases: unary(async (_pb: unknown, call) => {
      const ids = await backend.leaseLeases(plainOptions(ctx, call));
      return {
        header: headerToPb(backend.header()),
        leases: ids.map((id) => ({ ID: int64Out(id) })),
      };
    }),
  });
}
