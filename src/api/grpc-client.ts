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

/** `http://host:port/` → `host:port` (a client URL as members publish it, to a gRPC target). */
export function hostPort(url: string): string {
  const i = url.indexOf('://');
  return (i === -1 ? url : url.slice(i + 3)).replace(/\/+$/, '');
}
