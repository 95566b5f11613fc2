export { WatchError, WatchErrorCode } from './errors.js';
export * from './hub.js';
export * from './limits.js';
export type { WatchResponse } from './response.js';
export type { WatchCreateRequest, WatchStream } from './stream.js';
