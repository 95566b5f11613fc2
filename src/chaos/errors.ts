import { TandemError } from '../util/errors.js';

/**
 * Errors of the chaos analysis. A history that cannot be read or paired is bad input (the
 * recorder or the runner has a bug), never a verdict about the database: the checkers only run
 * on histories that passed validation.
 */
export type HistoryErrorCode =
  /** A line is not a JSON object, or is too long. */
  | 'HISTORY_PARSE'
  /** A field is missing, has the wrong type, or an unknown field is present. */
  | 'HISTORY_FIELD'
  /** Invocations and completions do not pair up (double invoke, orphan completion, …). */
  | 'HISTORY_PAIRING'
  /** A process invoked again after an operation of its ended in `info` (Jepsen's rule). */
  | 'HISTORY_PROCESS_REUSED'
  /** Time went backwards within one process. */
  | 'HISTORY_TIME';

export class HistoryError extends TandemError<HistoryErrorCode> {
  /** 1-based line (or event position + 1) the error is about. */
  readonly line: number;
  constructor(
    code: HistoryErrorCode,
    line: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, `history line ${line}: ${message}`, options);
    this.line = line;
  }
}

export type CheckInputErrorCode =
  /** A checker's input (watch events, lease records, options) is malformed. */
  | 'CHECK_INPUT_INVALID'
  /** The naive reference checker was given more operations than it can enumerate. */
  | 'REFERENCE_TOO_LARGE';

export class CheckInputError extends TandemError<CheckInputErrorCode> {}
