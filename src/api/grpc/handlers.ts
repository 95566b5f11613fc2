/**
 * What a service gives the gRPC server: per method, a handler tagged with its kind, and what
 * the server gives handlers: call objects. Only the kinds etcd's API uses exist (unary, server
 * streaming, bidirectional streaming); the server checks each tag against the proto at startup.
 */
import { assert } from '../../util/assert.js';
import { frameMessage, MESSAGE_PREFIX_BYTES } from './framing.js';
import type { Metadata } from './metadata.js';
import type { CallStatus } from './status.js';

/** What every call offers its handler. */
export interface CallContext {
  readonly metadata: Metadata;
  /**
   * Aborts when the call ends before its handler ended it: the client cancelled or went away,
   * its deadline passed, its input was refused, or the server was closed. Created on first use.
   */
  readonly signal: AbortSignal;
  /** True once the signal has fired (reading this creates nothing). */
  readonly cancelled: boolean;
  /** The verified client certificate's common name (gRPC over TLS with client-cert auth). */
  readonly peerCommonName?: string | undefined;
}

/**
 * A unary handler: resolves with the response, or rejects; the server turns a rejection into a
 * status with the function it was given (errors.ts's table for tandem).
 */
export type UnaryHandler<Req, Res> = (request: Req, call: CallContext) => Promise<Res>;

/** Events of every streaming call. */
export interface StreamEvents {
  /** There is room to write again after write() returned false. */
  drain: [];
  /** The call ended early (see CallContext.signal); nothing more is sent. */
  cancelled: [];
}

/** The sending half of a streaming call. */
export interface ServerWritableCall<Res> extends CallContext {
  /** Sends one message; false when the buffer is over its mark: wait for 'drain'. */
  write(message: Res): boolean;
  /** Ends the call with status OK. */
  end(): void;
  /** Ends the call with an error status. */
  fail(status: CallStatus): void;
}

/** A server-streaming call: one request, any number of responses. */
export interface ServerStreamingCall<Req, Res> extends ServerWritableCall<Res> {
  readonly request: Req;
  on<E extends keyof StreamEvents>(event: E, listener: (...args: StreamEvents[E]) => void): this;
  once<E extends keyof StreamEvents>(event: E, listener: (...args: StreamEvents[E]) => void): this;
  off<E extends keyof StreamEvents>(event: E, listener: (...args: StreamEvents[E]) => void): this;
}

export interface BidiEvents<Req> extends StreamEvents {
  /** One request message. */
  data: [request: Req];
  /** The client half-closed: no more requests. */
  end: [];
}

/** A bidirectional call: requests and responses, each at its own pace. */
export interface BidiCall<Req, Res> extends ServerWritableCall<Res> {
  /** True once 'end' was emitted. */
  readonly readableEnded: boolean;
  /** Stops 'data' events; HTTP/2 flow control then holds the client back. */
  pause(): void;
  resume(): void;
  on<E extends keyof BidiEvents<Req>>(
    event: E,
    listener: (...args: BidiEvents<Req>[E]) => void,
  ): this;
  once<E extends keyof BidiEvents<Req>>(
    event: E,
    listener: (...args: BidiEvents<Req>[E]) => void,
  ): this;
  off<E extends keyof BidiEvents<Req>>(
    event: E,
    listener: (...args: BidiEvents<Req>[E]) => void,
  ): this;
}

export type MethodHandler =
  | { readonly kind: 'unary'; readonly handle: UnaryHandler<unknown, unknown> }
  | {
      readonly kind: 'serverStream';
      readonly handle: (call: ServerStreamingCall<unknown, unknown>) => void;
    }
  | { readonly kind: 'bidi'; readonly handle: (call: BidiCall<unknown, unknown>) => void };

/** A service's handlers by method name (rpc names as in the .proto). */
export type ServiceHandlers = Readonly<Record<string, MethodHandler>>;

export function unaryHandler<Req, Res>(handle: UnaryHandler<Req, Res>): MethodHandler {
  return { kind: 'unary', handle: handle as UnaryHandler<unknown, unknown> };
}

export function serverStreamHandler<Req, Res>(
  handle: (call: ServerStreamingCall<Req, Res>) => void,
): MethodHandler {
  return {
    kind: 'serverStream',
    handle: handle as (call: ServerStreamingCall<unknown, unknown>) => void,
  };
}

export function bidiHandler<Req, Res>(handle: (call: BidiCall<Req, Res>) => void): MethodHandler {
  return { kind: 'bidi', handle: handle as (call: BidiCall<unknown, unknown>) => void };
}

/**
 * A unary response already framed for the wire, in pieces written one after another (the gRPC
 * prefix first): what a handler returns for a large answer it encoded a slice per event-loop
 * turn, so that neither encoding it nor joining it into one buffer holds the loop. The codec is
 * not called for it.
 */
export class FramedResponse {
  /** The message's length (without the prefix). */
  readonly messageBytes: number;

  constructor(readonly pieces: readonly Buffer[]) {
    assert(pieces.length > 0 && pieces[0]!.length === MESSAGE_PREFIX_BYTES, 'a prefix first');
    const prefix = pieces[0]!;
    this.messageBytes = prefix.readUInt32BE(1);
    let bytes = 0;
    for (let i = 1; i < pieces.length; i++) bytes += pieces[i]!.length;
    assert(prefix[0] === 0 && bytes === this.messageBytes, "the prefix says the pieces' length");
  }

  /** Frames `body`, a message in pieces (protobuf fields, each piece whole fields). */
  static of(body: readonly Buffer[]): FramedResponse {
    let bytes = 0;
    for (const piece of body) bytes += piece.length;
    assert(bytes < 2 ** 32, 'a gRPC message is under 4 GiB');
    const prefix = Buffer.alloc(MESSAGE_PREFIX_BYTES);
    prefix.writeUInt32BE(bytes, 1);
    return new FramedResponse([prefix, ...body]);
  }
}

/** Bytes to request and response to bytes, for one method. */
export interface MethodCodec {
  /** Throws on malformed input (the call then ends INTERNAL, "Error deserializing request"). */
  decodeRequest(message: Buffer): unknown;
  /** The response as a whole gRPC message: the 5-byte prefix, then the protobuf bytes. */
  encodeResponse(response: unknown): Buffer;
}

/** A method as the server routes it. */
export interface MethodDescriptor {
  /** "/package.Service/Method". */
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly codec: MethodCodec;
}

/** The handler kind a method's streaming flags call for (client streaming is not served). */
export function kindOf(method: MethodDescriptor): MethodHandler['kind'] | null {
  if (!method.requestStream) return method.responseStream ? 'serverStream' : 'unary';
  return method.responseStream ? 'bidi' : null;
}

/** A method as @grpc/proto-loader (or a hand-made grpc-js service definition) describes it. */
export interface SerializerDefinition {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  requestDeserialize(message: Buffer): unknown;
  responseSerialize(response: never): Buffer;
}

/**
 * A service's methods with the definition's own codecs, except those named in `codecs` (the
 * hand-written ones of the hot methods).
 */
export function describeService(
  definition: Readonly<Record<string, SerializerDefinition>>,
  codecs: Readonly<Record<string, MethodCodec>> = {},
): Record<string, MethodDescriptor> {
  const described: Record<string, MethodDescriptor> = {};
  for (const [name, def] of Object.entries(definition)) {
    const serialize = def.responseSerialize as (response: unknown) => Buffer;
    const codec: MethodCodec = codecs[name] ?? {
      decodeRequest: (message) => def.requestDeserialize(message),
      encodeResponse: (response) => frameMessage(serialize(response)),
    };
    described[name] = {
      path: def.path,
      requestStream: def.requestStream,
      responseStream: def.responseStream,
      codec,
    };
  }
  for (const name of Object.keys(codecs)) {
    if (definition[name] === undefined) throw new Error(`codec for ${name}: no such method`);
  }
  return described;
}
