import { test } from 'node:test';
import { checkWatchContract } from './watch-contract.js';
import { FakeWatchableStore } from './watch-fake-store.js';

test('watch contract over the fake store (test double)', () => {
  checkWatchContract(() => {
    const store = new FakeWatchableStore();
    return { store, write: (ops) => store.txn(ops), compact: (rev) => store.compact(rev) };
  }, 400);
});
