/** The key-value layer's public surface. */
export * from './api-types.js';
export type { Backend, Bucket, ReadView, WriteTx } from './backend/backend.js';
export { LmdbBackend, type LmdbBackendOptions } from './backend/lmdb.js';
export { MemoryBackend } from './backend/memory.js';
export * from './errors.js';
export { decodeCommand, encodeCommand } from './mvcc/command.js';
export { type KvHash, MvccStore } from './mvcc/store.js';
export * from './state-machine.js';
export * from './types.js';
export * from './validate.js';
