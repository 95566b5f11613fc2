export { readWholeFile, removeTempFiles, TMP_SUFFIX, writeFileAtomic } from './atomic.js';
export { StorageError, type StorageErrorCode, type StorageErrorLocation } from './errors.js';
export { FaultyFileSystem, type InjectedErrorCode } from './fault-fs.js';
export {
  type FileHandle,
  type FileStat,
  type FileSystem,
  NodeFileSystem,
  type OpenMode,
} from './fs.js';
export { type SnapshotLoad, SnapshotStore, type SnapshotStoreOptions } from './snapshot/store.js';
export type { SnapshotMarker } from './wal/format.js';
export {
  Wal,
  type WalOpenResult,
  type WalOptions,
  type WalRepair,
  type WalRepairHook,
  type WalStats,
} from './wal/wal.js';
