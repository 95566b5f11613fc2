/** Shared fixtures for the transport tests: messages, transports on loopback, waiting, a proxy. */
import net from 'node:net';
import { sleep } from '../../src/cli/local-net.js';
import type { PeerReport } from '../../src/io/network.js';
import { type Message, MessageType, type NodeId } from '../../src/raft/types.js';
import { packFrame } from '../../src/transport/codec.js';
import { FrameDecoder, type FrameType } from '../../src/transport/frame.js';
import {
  type ClusterSecret,
  clusterSecret,
  DialerHandshake,
} from '../../src/transport/handshake.js';
import type { TransportLimits } from '../../src/transport/limits.js';
import type { TransportLogger } from '../../src/transport/logger.js';
import { TcpTransport, type TcpTransportOptions } from '../../src/transport/transport.js';
import { Prng } from '../../src/util/prng.js';

/** The tests' sleep is the launcher's (src/cli/local-net.ts). */
export { sleep };

export const CLUSTER = 'test-cluster';
/** The secret every test transport holds (a stranger's tests use another). */
export const SECRET = clusterSecret('transport-tests-secret-0123456789');

/** Fast limits: short timers so reconnects and probes happen within the test budget. */
export const FAST_LIMITS: Partial<TransportLimits> = {
  backoffMinMs: 20,
  backoffMaxMs: 200,
  probeIntervalMs: 100,
  dialTimeoutMs: 1_000,
  handshakeTimeoutMs: 1_000,
  snapshotStallTimeoutMs: 5_000,
};

export function msg(fields: Partial<Message> & { type: MessageType }): Message {
  return {
    to: 2,
    from: 1,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    snapshot: null,
    reject: false,
    rejectHint: 0,
    context: new Uint8Array(0),
    ...fields,
  };
}

/** A comparable form: bytes as hex, so Buffer and Uint8Array views compare equal. */
export function canon(value: unknown): unknown {
  if (value instanceof Uint8Array) return `bytes:${Buffer.from(value).toString('hex')}`;
  if (Array.isArray(value)) return value.map(canon);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = canon(v);
    return out;
  }
  return value;
}

export interface LogEntry {
  readonly level: 'error' | 'warn' | 'info' | 'debug';
  readonly obj: object;
  readonly message: string;
}

export class CapturingLogger implements TransportLogger {
  readonly entries: LogEntry[] = [];
  error(obj: object, message: string): void {
    this.entries.push({ level: 'error', obj, message });
  }
  warn(obj: object, message: string): void {
    this.entries.push({ level: 'warn', obj, message });
  }
  info(obj: object, message: string): void {
    this.entries.push({ level: 'info', obj, message });
  }
  debug(obj: object, message: string): void {
    this.entries.push({ level: 'debug', obj, message });
  }
  errors(): string[] {
    return this.entries.filter((e) => e.level === 'error').map((e) => e.message);
  }
}

/** A transport plus what it received, ready for assertions. */
export class Node {
  readonly inbox: Message[] = [];
  readonly reports: PeerReport[] = [];
  readonly logger = new CapturingLogger();
  readonly transport: TcpTransport;
  address = '';

  constructor(id: NodeId, options: Partial<TcpTransportOptions> = {}) {
    this.transport = new TcpTransport({
      id,
      clusterId: CLUSTER,
      secret: SECRET,
      listen: [{ host: '127.0.0.1', port: 0 }],
      logger: this.logger,
      random: new Prng(id),
      ...options,
      limits: { ...FAST_LIMITS, ...options.limits },
    });
    this.transport.onMessage((m) => this.inbox.push(m));
    this.transport.onReport((r) => this.reports.push(r));
  }

  async start(): Promise<this> {
    const addresses = await this.transport.listen();
    this.address = addresses[0]!;
    return this;
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}

export async function startNode(id: NodeId, options?: Partial<TcpTransportOptions>) {
  return new Node(id, options).start();
}

/** Polls `predicate` until true; fails with `what` after `timeoutMs`. */
export async function waitUntil(
  predicate: () => boolean,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * A TCP forwarder standing for one network path to a peer: `kill()` is a link failure (listener
 * and every forwarded connection gone), `revive()` brings the path back on the same port.
 */
export class LinkProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  connections = 0;

  constructor(
    readonly host: string,
    private readonly target: { host: string; port: number },
  ) {}

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  async start(): Promise<this> {
    const server = net.createServer((client) => {
      this.connections += 1;
      const upstream = net.connect(this.target);
      this.track(client);
      this.track(upstream);
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.host, port: this.port }, resolve);
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
    return this;
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
  }

  async kill(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  revive(): Promise<this> {
    return this.start();
  }
}

export const ALL_MESSAGE_TYPES: readonly MessageType[] = Object.values(MessageType);

/**
 * A raw socket that completes the dialer's side of the handshake with `secret` as node `from`
 * dialing node `to`; resolves once HELLO_OK arrives (the socket then carries raw frames), rejects
 * on a refusal, a close or after 3 s. For tests that write frames by hand.
 */
export function authenticatedSocket(
  address: string,
  options: { from: NodeId; to: NodeId; secret?: ClusterSecret; clusterId?: string },
): Promise<net.Socket> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), address.split(':').pop()];
  const handshake = new DialerHandshake(
    options.secret ?? SECRET,
    options.clusterId ?? CLUSTER,
    options.from,
    options.to,
  );
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port: Number(port) });
    const timer = setTimeout(() => fail(new Error('handshake timed out')), 3_000);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const decoder = new FrameDecoder(
      {
        onFrame(type: FrameType, payload: Buffer): void {
          const reply = handshake.onFrame(type, payload);
          if (reply !== null) socket.write(reply);
          if (handshake.established) {
            clearTimeout(timer);
            decoder.stop();
            socket.removeAllListeners('data');
            socket.removeAllListeners('close');
            resolve(socket);
          }
        },
      },
      4096,
    );
    socket.once('connect', () => socket.write(handshake.hello()));
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (error) {
        fail(error as Error);
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => fail(new Error('closed during the handshake')));
  });
}

/** A frame of `type` whose payload is `value` (msgpack), for tests that write by hand. */
export function frame(type: FrameType, value: unknown): Buffer {
  return packFrame(type, value);
}
