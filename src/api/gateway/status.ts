/**
 * How a gRPC status reaches an HTTP client of etcd's gateway (etcd 3.5, grpc-gateway v1):
 * the HTTP status of runtime.HTTPStatusFromCode, a unary error as {"error","code","message"},
 * a streaming error as one {"error":{"grpc_code","http_code","message","http_status"}} line.
 */
import { type CallStatus, Status, type StatusCode } from '../grpc/status.js';

/** grpc-gateway v1's HTTPStatusFromCode. */
const HTTP_STATUS_OF: Readonly<Record<StatusCode, number>> = {
  [Status.OK]: 200,
  [Status.CANCELLED]: 408,
  [Status.UNKNOWN]: 500,
  [Status.INVALID_ARGUMENT]: 400,
  [Status.DEADLINE_EXCEEDED]: 504,
  [Status.NOT_FOUND]: 404,
  [Status.ALREADY_EXISTS]: 409,
  [Status.PERMISSION_DENIED]: 403,
  [Status.RESOURCE_EXHAUSTED]: 429,
  // grpc-gateway deliberately does not answer 412 here.
  [Status.FAILED_PRECONDITION]: 400,
  [Status.ABORTED]: 409,
  [Status.OUT_OF_RANGE]: 400,
  [Status.UNIMPLEMENTED]: 501,
  [Status.INTERNAL]: 500,
  [Status.UNAVAILABLE]: 503,
  [Status.DATA_LOSS]: 500,
  [Status.UNAUTHENTICATED]: 401,
};

/** Go's http.StatusText for the statuses this gateway sends. */
const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Request Entity Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export function httpStatusOf(code: StatusCode): number {
  return HTTP_STATUS_OF[code];
}

export function statusText(httpStatus: number): string {
  return STATUS_TEXT[httpStatus] ?? '';
}

/** A unary call's error body (grpc-gateway v1's errorBody with OrigName: details omitted). */
export function unaryErrorBody(status: CallStatus): string {
  return JSON.stringify({ error: status.details, code: status.code, message: status.details });
}

/** A streaming call's error line. */
export function streamErrorLine(status: CallStatus): string {
  const httpCode = httpStatusOf(status.code);
  return `${JSON.stringify({
    error: {
      grpc_code: status.code,
      http_code: httpCode,
      message: status.details,
      http_status: statusText(httpCode),
    },
  })}\n`;
}
