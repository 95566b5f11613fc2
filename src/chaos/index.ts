/** The analysis half of `tandem chaos`: histories, checkers, reports. */
export * from './analyze.js';
export * from './checks.js';
export * from './errors.js';
export * from './history.js';
export * from './limits.js';
export * from './linearizability.js';
export * from './reference.js';
export * from './report.js';
