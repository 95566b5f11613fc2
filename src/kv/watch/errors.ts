import { TandemError } from '../../util/errors.js';

/**
 * Watch error codes. Messages are etcd's (mvcc/watcher.go, mvcc/kvstore.go) where etcd has the
 * error; a failed create reaches the client as `cancelReason`, as in etcd.
 */
export const WatchErrorCode = {
  /** The start revision (or a slow watcher's next revision) was compacted away. */
  Compacted: 'WATCH_COMPACTED',
  /** A client-chosen watch id already in use on the stream. */
  DuplicateId: 'WATCH_DUPLICATE_ID',
  /** key >= rangeEnd. */
  EmptyRange: 'WATCH_EMPTY_RANGE',
  /** A negative start revision or watch id. */
  InvalidRequest: 'WATCH_INVALID_REQUEST',
  /** The stream holds `WATCHERS_PER_STREAM_MAX` watchers. */
  TooManyWatchers: 'WATCH_TOO_MANY_WATCHERS',
  /**
   * The stream's queue has no room even for a control response: the client sends requests
   * without reading responses. The API edge should stop reading requests until it drains.
   */
  StreamBacklogged: 'WATCH_STREAM_BACKLOGGED',
  StreamClosed: 'WATCH_STREAM_CLOSED',
} as const;
export type WatchErrorCode = (typeof WatchErrorCode)[keyof typeof WatchErrorCode];

const MESSAGES: Readonly<Record<WatchErrorCode, string>> = {
  [WatchErrorCode.Compacted]: 'mvcc: required revision has been compacted',
  [WatchErrorCode.DuplicateId]: 'mvcc: duplicate watch ID provided on the WatchStream',
  [WatchErrorCode.EmptyRange]: 'mvcc: watcher range is empty',
  [WatchErrorCode.InvalidRequest]: 'tandem: invalid watch request',
  [WatchErrorCode.TooManyWatchers]: 'tandem: too many watchers on this stream',
  [WatchErrorCode.StreamBacklogged]: 'tandem: watch stream backlogged: read its responses',
  [WatchErrorCode.StreamClosed]: 'tandem: watch stream closed',
};

export class WatchError extends TandemError<WatchErrorCode> {
  constructor(code: WatchErrorCode, detail?: string) {
    super(code, detail === undefined ? MESSAGES[code] : `${MESSAGES[code]}: ${detail}`);
  }
}

/** The store signals compacted history with a TandemError whose code is this (types.ts). */
export const STORE_COMPACTED_CODE = 'COMPACTED';
