export { decodeConfChange, encodeConfChange, LEAVE_JOINT_CONF_CHANGE } from './codec.js';
export { RaftError, type RaftErrorCode } from './errors.js';
export { CAMPAIGN_TRANSFER_CONTEXT } from './raft.js';
export { RawNode } from './rawnode.js';
export { EMPTY_CONF_STATE, EMPTY_SNAPSHOT, MemoryStorage } from './storage.js';
export * from './types.js';
