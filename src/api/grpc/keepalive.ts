/**
 * The server's keep-alive enforcement, as grpc-go's (internal/transport/http2_server.go,
 * handlePing; keepalive.EnforcementPolicy) that etcd configures with --grpc-keepalive-min-time
 * (5 s) and PermitWithoutStream false:
 *
 * - a PING that arrives sooner than `minTimeMs` after the previous one is a strike; with no
 *   stream open and `permitWithoutStream` false, sooner than 2 hours is (a client has no reason
 *   to keep an idle connection alive that often);
 * - the first PING after the server sent response HEADERS or DATA is never a strike and clears
 *   the strikes (it may be a BDP ping answering that data, as grpc-go's clients send);
 * - past `PING_STRIKES_MAX` strikes the connection is sent away with GOAWAY ENHANCE_YOUR_CALM and
 *   debug data "too_many_pings" (grpc-go clients then double their keep-alive time).
 *
 * Pure: time comes in as `nowMs`, from any monotonic clock.
 */
import { assert } from '../../util/assert.js';

/** grpc-go's maxPingStrikes: this many strikes are forgiven, one more closes. */
export const PING_STRIKES_MAX = 2;

/** grpc-go's defaultPingTimeout: the least gap between pings on a connection with no stream. */
export const PING_WITHOUT_STREAM_INTERVAL_MS = 2 * 60 * 60 * 1000;

/** The GOAWAY debug data grpc-go sends, which grpc clients recognise. */
export const TOO_MANY_PINGS = 'too_many_pings';

export interface KeepaliveEnforcement {
  /** etcd's --grpc-keepalive-min-time: the least gap between client pings. */
  readonly minTimeMs: number;
  /** Pings on a connection with no open stream are allowed at minTimeMs too (etcd: false). */
  readonly permitWithoutStream: boolean;
}

/** etcd's defaults (embed/config.go DefaultGRPCKeepAliveMinTime; etcd.go's policy). */
export const KEEPALIVE_ENFORCEMENT_DEFAULT: KeepaliveEnforcement = Object.freeze({
  minTimeMs: 5_000,
  permitWithoutStream: false,
});

/** One connection's ping accounting. */
export class PingStrikes {
  private lastPingAtMs = Number.NEGATIVE_INFINITY; // grpc-go's zero time: the first never strikes
  private strikes = 0;
  private sentSincePing = false;

  constructor(private readonly policy: KeepaliveEnforcement) {
    assert(Number.isFinite(policy.minTimeMs) && policy.minTimeMs >= 0, 'minTimeMs >= 0');
  }

  /** The server sent response headers or data on this connection. */
  noteSent(): void {
    this.sentSincePing = true;
  }

  /** A PING (not an ACK) arrived; true when the connection must be sent away. */
  onPing(nowMs: number, openStreams: number): boolean {
    assert(openStreams >= 0, 'open streams are counted from zero');
    const lastMs = this.lastPingAtMs;
    this.lastPingAtMs = nowMs;
    if (this.sentSincePing) {
      this.sentSincePing = false;
      this.strikes = 0;
      return false;
    }
    const gapMinMs =
      openStreams === 0 && !this.policy.permitWithoutStream
        ? PING_WITHOUT_STREAM_INTERVAL_MS
        : this.policy.minTimeMs;
    if (nowMs - lastMs < gapMinMs) this.strikes++;
    return this.strikes > PING_STRIKES_MAX;
  }

  get strikeCount(): number {
    return this.strikes;
  }
}
