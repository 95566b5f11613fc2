export { LeaseError, LeaseErrorCode } from './errors.js';
export { checkLeaseId, LeaseIdGenerator } from './lease-id.js';
export * from './lessor.js';
export * from './limits.js';
