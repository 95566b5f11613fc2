import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageType } from '../../src/raft/types.js';
import { TransportError } from '../../src/transport/errors.js';
import { msg, sleep, startNode, waitUntil } from './helpers.js';

test('fault rules exist only in test mode', async () => {
  const a = await startNode(1);
  try {
    assert.equal(a.transport.faults, null);
  } finally {
    await a.close();
  }
});

test('drop and delay rules per peer link', async () => {
  const a = await startNode(1, { faultInjection: true });
  const b = await startNode(2);
  try {
    a.transport.setPeer(2, [b.address]);
    const faults = a.transport.faults!;
    assert.throws(() => faults.set(2, { dropRate: 2 }), TransportError);

    faults.set(2, { dropRate: 1 }); // a partition in the direction a -> b
    for (let i = 0; i < 50; i++) a.transport.send(2, [msg({ type: MessageType.App, index: i })]);
    await sleep(100);
    assert.equal(b.inbox.length, 0);
    assert.equal(faults.counters().dropped, 50);

    faults.set(2, { dropRate: 0.5 });
    for (let i = 0; i < 400; i++) a.transport.send(2, [msg({ type: MessageType.App, index: i })]);
    await waitUntil(() => b.inbox.length === 400 - (faults.counters().dropped - 50), 'lossy link');
    assert.ok(b.inbox.length > 120 && b.inbox.length < 280, `${b.inbox.length} of 400 arrived`);
    b.inbox.length = 0;

    faults.set(2, { delayMs: 200 });
    const started = performance.now();
    for (let i = 0; i < 10; i++) a.transport.send(2, [msg({ type: MessageType.App, index: i })]);
    await sleep(50);
    assert.equal(b.inbox.length, 0, 'held back by the delay rule');
    await waitUntil(() => b.inbox.length === 10, 'delayed delivery');
    assert.ok(performance.now() - started >= 190);
    assert.deepEqual(
      b.inbox.map((m) => m.index),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );

    faults.clear(2);
    b.inbox.length = 0;
    a.transport.send(2, [msg({ type: MessageType.Heartbeat })]);
    await waitUntil(() => b.inbox.length === 1, 'delivery after clearing');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});
