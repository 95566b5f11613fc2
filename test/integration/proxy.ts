/**
 * TEST HARNESS: a TCP proxy the test controls, to cut one link of a peer with several
 * addresses. `cut()` stops accepting and destroys every connection (the dialer sees the link
 * fail and new dials refused); `restore()` listens again on the same address.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export class TcpProxy {
  /** Connections accepted since the proxy started (all time). */
  connections = 0;
  /** Bytes forwarded from dialers to the target (all time). */
  bytesIn = 0;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private port = 0;

  private constructor(
    readonly host: string,
    readonly target: string,
  ) {}

  /** A proxy listening on `host` (an OS-chosen port) that forwards to `target` (host:port). */
  static async start(host: string, target: string): Promise<TcpProxy> {
    const proxy = new TcpProxy(host, target);
    await proxy.listen();
    return proxy;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  private listen(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        this.port = (server.address() as { port: number }).port;
        resolve();
      });
    });
  }

  private accept(client: Socket): void {
    this.connections += 1;
    const i = this.target.lastIndexOf(':');
    const upstream = connect(Number(this.target.slice(i + 1)), this.target.slice(0, i));
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (d: Buffer) => {
      this.bytesIn += d.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Cuts the link: no new connections, every open one destroyed. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Heals the link: accepts again on the same address. */
  async restore(): Promise<void> {
    if (this.server === null) await this.listen();
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
