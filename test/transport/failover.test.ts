import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageType } from '../../src/raft/types.js';
import { parseAddress } from '../../src/transport/address.js';
import { LinkProxy, msg, startNode, waitUntil } from './helpers.js';

// Two network paths to one peer: a proxy on 127.0.0.1 (preferred) and one on 127.0.0.2.
test('fails over to the second address and returns to the preferred one', async () => {
  const a = await startNode(1);
  const b = await startNode(2);
  const target = parseAddress(b.address);
  const preferred = await new LinkProxy('127.0.0.1', target).start();
  const fallback = await new LinkProxy('127.0.0.2', target).start();
  let commit = 0;
  const sendOne = () =>
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: ++commit })]);
  const delivered = () => b.inbox.at(-1)?.commit ?? 0;
  try {
    a.transport.setPeer(2, [preferred.address, fallback.address]);
    sendOne();
    await waitUntil(() => delivered() === commit, 'delivery on the preferred link');
    assert.equal(a.transport.peerStatus(2)!.activeAddress, preferred.address);

    await preferred.kill();
    await waitUntil(
      () => a.transport.peerStatus(2)!.activeAddress === fallback.address,
      'failover to the fallback link',
    );
    sendOne();
    await waitUntil(() => delivered() === commit, 'delivery on the fallback link');
    const during = a.transport.peerStatus(2)!;
    assert.equal(during.links[0]!.state, 'down');
    assert.equal(during.links[1]!.state, 'connected');
    assert.ok(a.reports.some((r) => r.kind === 'unreachable' && r.peer === 2));

    // Probes of the preferred link fail quietly while it is down: traffic stays on the fallback.
    await new Promise((resolve) => setTimeout(resolve, 300));
    sendOne();
    await waitUntil(() => delivered() === commit, 'delivery while probing');
    assert.equal(a.transport.peerStatus(2)!.activeAddress, fallback.address);

    await preferred.revive();
    await waitUntil(
      () => a.transport.peerStatus(2)!.activeAddress === preferred.address,
      'return to the preferred link',
    );
    sendOne();
    await waitUntil(() => delivered() === commit, 'delivery after returning');
    const after = a.transport.peerStatus(2)!;
    assert.equal(after.links[0]!.state, 'connected');
    assert.equal(after.links[1]!.state, 'idle');
    assert.ok(after.links[0]!.connects >= 2);
    // Every heartbeat arrived, in order, across both switches.
    assert.deepEqual(
      b.inbox.map((m) => m.commit),
      Array.from({ length: commit }, (_, i) => i + 1),
    );
  } finally {
    await Promise.all([a.close(), b.close(), preferred.kill(), fallback.kill()]);
  }
});

test('starts on the fallback when the preferred address is down from the beginning', async () => {
  const a = await startNode(1);
  const b = await startNode(2);
  const target = parseAddress(b.address);
  const dead = await new LinkProxy('127.0.0.1', target).start();
  await dead.kill();
  const fallback = await new LinkProxy('127.0.0.2', target).start();
  try {
    a.transport.setPeer(2, [dead.address, fallback.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 7 })]);
    await waitUntil(() => b.inbox.length === 1, 'delivery via the fallback');
    assert.equal(a.transport.peerStatus(2)!.activeAddress, fallback.address);
  } finally {
    await Promise.all([a.close(), b.close(), fallback.kill()]);
  }
});
