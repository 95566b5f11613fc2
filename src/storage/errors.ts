import { TandemError } from '../util/errors.js';

/**
 * Stable codes of storage failures. Corruption and identity errors stop a member from starting
 * (they need an operator or a repair from peers); I/O errors fail one operation.
 */
export type StorageErrorCode =
  /** A record failed its checksum or framing somewhere other than a torn tail, or the log has a gap. */
  | 'WAL_CORRUPT'
  /** The data directory belongs to another cluster or member (segment header ids differ). */
  | 'WAL_IDENTITY_MISMATCH'
  /**
   * An fdatasync failed: the kernel may have dropped the dirty pages, so what is on disk is
   * unknown ("fsyncgate"). The WAL refuses every later write; restart and recover from disk.
   */
  | 'WAL_FAILED'
  /** The WAL was closed. */
  | 'WAL_CLOSED'
  /** A record or batch is above its named limit (a caller bug or a misconfiguration). */
  | 'RECORD_TOO_LARGE'
  /** The device is full (ENOSPC / EDQUOT). Nothing was acknowledged; retry after freeing space. */
  | 'NO_SPACE'
  /** Any other I/O failure of one operation (EIO, EBADF, ...). */
  | 'IO'
  /** A snapshot file failed its checksum or does not decode. */
  | 'SNAPSHOT_CORRUPT'
  /** The WAL names a snapshot (its marker) that no valid snapshot file matches. */
  | 'SNAPSHOT_MISSING'
  /** Options that break a stated relation (segment size below its minimum, ...). */
  | 'INVALID_CONFIG';

/** Where an error was found, when it is about bytes on disk. */
export interface StorageErrorLocation {
  readonly file: string;
  /** Byte offset of the first bad record (or the damaged byte) in `file`. */
  readonly offset: number;
}

export class StorageError extends TandemError<StorageErrorCode> {
  readonly location: StorageErrorLocation | null;
  constructor(
    code: StorageErrorCode,
    message: string,
    options?: { cause?: unknown; location?: StorageErrorLocation },
  ) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.location = options?.location ?? null;
  }
}

/** Node's errno codes that mean "the device is full". */
const NO_SPACE_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT']);

/** Wraps an error thrown by a FileSystem call into a StorageError (NO_SPACE or IO). */
export function ioError(what: string, cause: unknown): StorageError {
  if (cause instanceof StorageError) return cause;
  const code = (cause as { code?: unknown } | null)?.code;
  const text = cause instanceof Error ? cause.message : String(cause);
  if (typeof code === 'string' && NO_SPACE_CODES.has(code)) {
    return new StorageError('NO_SPACE', `${what}: ${text}`, { cause });
  }
  return new StorageError('IO', `${what}: ${text}`, { cause });
}
