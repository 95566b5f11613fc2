/**
 * TEST HELPER: one unary gRPC call over raw node:http2 (no grpc-js, no protobuf library), for
 * tests that must not load either, or that send hand-encoded messages.
 */
import { connect } from 'node:http2';

const CALL_TIMEOUT_MS = 10_000;

/** One unary gRPC call over raw HTTP/2: the grpc-status and the response message's bytes. */
export function unaryCall(
  endpoint: string,
  path: string,
  request: Uint8Array,
): Promise<{ status: string | undefined; message: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://${endpoint}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`${path}: no answer within ${CALL_TIMEOUT_MS} ms`));
    }, CALL_TIMEOUT_MS);
    session.on('error', reject);
    const stream = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('trailers', (trailers) => {
      status = trailers['grpc-status'] as string | undefined;
    });
    stream.on('response', (headers) => {
      status ??= headers['grpc-status'] as string | undefined; // Trailers-Only
    });
    stream.on('end', () => {
      clearTimeout(timer);
      session.close();
      const body = Buffer.concat(chunks);
      resolve({ status, message: body.subarray(5) });
    });
    stream.on('error', reject);
    const frame = Buffer.alloc(5 + request.length);
    frame.writeUInt32BE(request.length, 1);
    frame.set(request, 5);
    stream.end(frame);
  });
}
