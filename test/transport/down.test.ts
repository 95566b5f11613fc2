/**
 * The `down` report (src/io/network.ts): said once when an established link is lost and then every
 * address of the peer refuses connections — the peer's process is gone. Never for a peer that is
 * merely unreachable (a silent listener, a cut link with another address still working), because
 * members use it to skip the election timeout (Raft.leaderDown).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { MessageType } from '../../src/raft/types.js';
import { parseAddress } from '../../src/transport/address.js';
import { LinkProxy, msg, sleep, startNode, waitUntil } from './helpers.js';

const downs = (reports: readonly { kind: string; peer: number }[]) =>
  reports.filter((r) => r.kind === 'down');

test('a peer whose process is gone is reported down once, after its link was lost', async () => {
  const a = await startNode(1);
  const b = await startNode(2);
  try {
    a.transport.setPeer(2, [b.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 1 })]);
    await waitUntil(() => b.inbox.length === 1, 'delivery');
    assert.deepEqual(downs(a.reports), []);
    await b.close(); // the listener and every connection go: connects are refused from now on
    await waitUntil(() => downs(a.reports).length === 1, 'the down report');
    assert.deepEqual(downs(a.reports), [{ kind: 'down', peer: 2 }]);
    // Later failed rounds (backoff retries) do not repeat it.
    await sleep(600);
    assert.equal(downs(a.reports).length, 1);
  } finally {
    await a.close();
  }
});

test('a peer never reached is not reported down (no link was lost)', async () => {
  const a = await startNode(1);
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  try {
    a.transport.setPeer(2, [`127.0.0.1:${port}`]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 1 })]);
    await waitUntil(() => a.reports.some((r) => r.kind === 'unreachable'), 'unreachable');
    await sleep(300);
    assert.deepEqual(downs(a.reports), []);
  } finally {
    await a.close();
  }
});

test('a lost link is not "down" while another address works, or while a listener accepts', async () => {
  const a = await startNode(1);
  const b = await startNode(2);
  const target = parseAddress(b.address);
  const first = await new LinkProxy('127.0.0.1', target).start();
  const second = await new LinkProxy('127.0.0.2', target).start();
  let silent: net.Server | null = null;
  const held = new Set<net.Socket>();
  try {
    a.transport.setPeer(2, [first.address, second.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 1 })]);
    await waitUntil(() => b.inbox.length === 1, 'delivery');
    await first.kill(); // refused on the first address, the second still works
    await waitUntil(
      () => a.transport.peerStatus(2)!.activeAddress === second.address,
      'failover to the second address',
    );
    assert.deepEqual(downs(a.reports), []);

    // Now the second path dies too, but something still accepts on it (a hung host, a stuck
    // process): dials time out instead of being refused, which is not proof of death.
    await second.kill();
    const s = net.createServer((socket) => held.add(socket));
    silent = s;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen({ host: '127.0.0.2', port: second.port }, resolve);
    });
    await waitUntil(() => a.transport.peerStatus(2)!.failedRounds >= 1, 'a failed round', 5_000);
    assert.deepEqual(downs(a.reports), []);
  } finally {
    for (const socket of held) socket.destroy();
    const s = silent;
    if (s !== null) await new Promise<void>((resolve) => s.close(() => resolve()));
    await Promise.all([a.close(), b.close(), first.kill(), second.kill()]);
  }
});

test('refused dials are not "down" while the peer\'s own connection to us is open', async () => {
  const a = await startNode(1);
  const b = await startNode(2);
  const proxy = await new LinkProxy('127.0.0.1', parseAddress(b.address)).start();
  try {
    a.transport.setPeer(2, [proxy.address]);
    b.transport.setPeer(1, [a.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 1 })]);
    b.transport.send(1, [msg({ type: MessageType.Heartbeat, from: 2, to: 1, commit: 1 })]);
    await waitUntil(() => b.inbox.length === 1 && a.inbox.length === 1, 'both directions');
    // a's way to b is refused from now on (a firewall rejecting), but b, alive, still talks to a.
    await proxy.kill();
    await waitUntil(() => a.transport.peerStatus(2)!.failedRounds >= 2, 'refused rounds');
    b.transport.send(1, [msg({ type: MessageType.Heartbeat, from: 2, to: 1, commit: 2 })]);
    await waitUntil(() => a.inbox.length === 2, "b's heartbeat on its own connection");
    assert.deepEqual(downs(a.reports), []);
    // Now b's process goes: its connection to a closes too, and the verdict comes.
    await b.close();
    await waitUntil(() => downs(a.reports).length === 1, 'the down report after b is gone');
  } finally {
    await Promise.all([a.close(), b.close(), proxy.kill()]);
  }
});
