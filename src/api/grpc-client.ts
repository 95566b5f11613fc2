/**
 * What this member needs to call another member's client port (forwarding to the leader,
 * forwarding a standby's clients): grpc-js, imported on first use, and the host:port of a URL.
 * grpc-js costs about 40 ms of a member's start-up; a member that never forwards never loads it.
 */
export type GrpcModule = typeof import('@grpc/grpc-js');

let grpcModule: Promise<GrpcModule> | null = null;

export function loadGrpc(): Promise<GrpcModule> {
  grpcModule ??= import('@grpc/grpc-js');
  return grpcModule;
}

/**
 * What a member presents when it calls another member's client port (forwarding to the leader,
 * ack=all, forwarding a standby's clients) over `https://`: the CA bundle it trusts for the
 * other's server certificate, and its own certificate and key for a server that checks client
 * certificates (node.ts: the peer certificate; see config.ts "TLS").
 */
export interface MemberCallTls {
  /** Null: the system's CAs. */
  readonly ca: Buffer | null;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * The channel credentials for a member's published client URL: TLS with `tls` when the URL says
 * `https://` (the scheme is the other member's word on what its port speaks), else plaintext.
 * An https URL without configured TLS still gets TLS, verified against the system's CAs.
 */
export function memberCallCredentials(
  grpc: GrpcModule,
  url: string,
  tls: MemberCallTls | null,
): import('@grpc/grpc-js').ChannelCredentials {
  if (!url.startsWith('https://')) return grpc.credentials.createInsecure();
  return tls === null
    ? grpc.credentials.createSsl()
    : grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
}

/** `http://host:port/` → `host:port` (a client URL as members publish it, to a gRPC target). */
export function hostPort(url: string): string {
  const i = url.indexOf('://');
  return (i === -1 ? url : url.slice(i + 3)).replace(/\/+$/, '');
}
