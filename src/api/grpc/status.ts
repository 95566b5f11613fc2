/**
 * gRPC status codes and the header values that carry them (doc/PROTOCOL-HTTP2.md in grpc/grpc):
 * `grpc-status` a decimal code, `grpc-message` percent-encoded UTF-8, `grpc-timeout` at most 8
 * digits and a unit.
 */

/** The canonical status codes (doc/statuscodes.md), named as every gRPC library names them. */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type StatusName = keyof typeof Status;
export type StatusCode = (typeof Status)[StatusName];

/**
 * A status as grpc-go's status.Error() prints it ("rpc error: code = PermissionDenied desc =
 * ..."): etcd puts that text where a field carries an error, e.g. a watch's cancel_reason.
 */
export function goStatusText(status: CallStatus): string {
  const name = (Object.keys(Status) as StatusName[]).find((n) => Status[n] === status.code);
  const goName =
    name === 'CANCELLED'
      ? 'Canceled'
      : (name ?? 'Unknown')
          .split('_')
          .map((w) => w[0] + w.slice(1).toLowerCase())
          .join('');
  return `rpc error: code = ${goName} desc = ${status.details}`;
}

/** How a call ended, as the client will see it. */
export interface CallStatus {
  readonly code: StatusCode;
  readonly details: string;
}

/**
 * `grpc-message`: UTF-8, then every byte outside printable ASCII, and '%' itself, as %XX. Plain
 * ASCII messages (all of etcd's) go out unchanged, without a copy.
 */
export function encodeStatusMessage(details: string): string {
  for (let i = 0; i < details.length; i++) {
    const c = details.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) return percentEncode(details);
  }
  return details;
}

function percentEncode(details: string): string {
  const bytes = Buffer.from(details, 'utf8');
  let out = '';
  for (const b of bytes) {
    out +=
      b < 0x20 || b > 0x7e || b === 0x25
        ? `%${b.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(b);
  }
  return out;
}

const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1_000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
};

/** The longest deadline honoured: setTimeout's limit (about 24.8 days); longer waits forever. */
export const DEADLINE_MS_MAX = 2 ** 31 - 1;

/**
 * A `grpc-timeout` value in milliseconds (fractions rounded up: a deadline is never early), or
 * null when it is not 1-8 digits and a unit.
 */
export function parseTimeoutMs(value: string): number | null {
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (match === null) return null;
  return Math.ceil(Number(match[1]) * TIMEOUT_UNIT_MS[match[2]!]!);
}

/** A status another member answered a forwarded call with: the edge passes it on as it is. */
export class ForwardedStatus extends Error {
  override readonly name = 'ForwardedStatus';
  constructor(readonly status: CallStatus) {
    super(status.details);
  }
}
