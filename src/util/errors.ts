/**
 * Typed errors with a stable `code` (lodestar/undici style). Each layer defines its codes; the API
 * edge maps codes one-to-one to gRPC status codes and etcd's messages.
 */
export class TandemError<Code extends string = string> extends Error {
  readonly code: Code;
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}
