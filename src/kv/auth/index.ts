/** etcd's auth store: users, roles, range permissions, simple tokens — pure. */
export * from './command.js';
export * from './errors.js';
export * from './perm-ranges.js';
export * from './simple-tokens.js';
export * from './store.js';
