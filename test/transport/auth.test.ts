/**
 * The authenticated peer plane below the process (handshake.ts, inbound.ts, join.ts): transports
 * with different secrets never exchange a message; unknown ids are refused before the
 * challenge; a joiner learns its ids only from a dialer that holds the secret; idle
 * authenticated links are closed unless their dialer pings (and real quiet links do ping); the
 * global handshake cap; the budget of snapshot bytes being received.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { newMessage } from '../../src/raft/raft.js';
import { MessageType } from '../../src/raft/types.js';
import { packFrame } from '../../src/transport/codec.js';
import { FrameType } from '../../src/transport/frame.js';
import { clusterSecret, encodeHello, newNonce } from '../../src/transport/handshake.js';
import { awaitDialedIdentity } from '../../src/transport/join.js';
import { FRAME_VERSION } from '../../src/transport/limits.js';
import { encodeSnapBeginFrame } from '../../src/transport/message-codec.js';
import { CLUSTER, msg, SECRET, sleep, startNode, waitUntil } from './helpers.js';
import { attemptHandshake, forgedHeartbeat, RawPeer } from './stranger.js';

const OTHER_SECRET = clusterSecret('another-cluster-secret-entirely');

test('a transport with another secret never delivers, in either direction', async () => {
  const a = await startNode(1, { secret: OTHER_SECRET });
  const b = await startNode(2);
  try {
    a.transport.setPeer(2, [b.address]);
    b.transport.setPeer(1, [a.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    b.transport.send(1, [msg({ type: MessageType.Heartbeat, from: 2, to: 1 })]);
    await waitUntil(
      // Each dialer checks the acceptor's proof first, sees it fail and hangs up.
      () =>
        b.logger.errors().some((e) => /node 1 failed authentication/.test(e)) &&
        a.logger.errors().some((e) => /node 2 failed authentication/.test(e)),
      'both sides to log the failure',
    );
    await sleep(200);
    assert.equal(a.inbox.length + b.inbox.length, 0);
    assert.equal(b.transport.status().inboundConnections, 0);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('an id the member does not admit is refused before the challenge', async () => {
  const b = await startNode(2, { admitPeer: (id) => id !== 7 });
  try {
    const refused = await RawPeer.connect(b.address);
    const attempt = await attemptHandshake(refused, {
      clusterId: CLUSTER,
      from: 7,
      to: 2,
      secret: SECRET,
    });
    assert.equal(attempt.auth, null, 'no challenge for an id not admitted');
    assert.match(refused.refusals().join(), /node 7 is not a member/);
    const admitted = await RawPeer.connect(b.address);
    const ok = await attemptHandshake(admitted, {
      clusterId: CLUSTER,
      from: 8,
      to: 2,
      secret: SECRET,
    });
    admitted.destroy();
    assert.equal(ok.accepted, true);
  } finally {
    await b.close();
  }
});

test('a joiner learns its ids only from a dialer that proves the secret', async () => {
  const probe = await startNode(9);
  const address = probe.address;
  await probe.close(); // a free port for the joiner
  const [host, port] = [address.split(':')[0]!, Number(address.split(':')[1])];
  const joined = awaitDialedIdentity({ listen: { host, port }, secret: SECRET });
  let settled = false;
  void joined.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await sleep(100);
  // A stranger's HELLO naming ids, with a wrong proof: closed, nothing learned.
  const stranger = await RawPeer.connect(address);
  const attempt = await attemptHandshake(stranger, {
    clusterId: 'beef',
    from: 66,
    to: 77,
    secret: OTHER_SECRET,
  });
  assert.equal(attempt.accepted, false);
  assert.ok(await stranger.waitClosed(), 'stranger closed');
  // A HELLO followed by anything but AUTH: closed too.
  const rude = await RawPeer.connect(address);
  rude.write(encodeHello({ clusterId: 'beef', from: 66, to: 77, nonce: newNonce() }));
  await rude.frame(FrameType.Challenge);
  rude.write(forgedHeartbeat(66, 77, 5));
  assert.ok(await rude.waitClosed(), 'rude closed');
  await sleep(100);
  assert.equal(settled, false, 'no identity from a stranger');
  // The leader (a real transport holding the secret) names the joiner.
  const leader = await startNode(5);
  try {
    leader.transport.setPeer(42, [address]);
    leader.transport.send(42, [msg({ type: MessageType.Heartbeat, from: 5, to: 42 })]);
    const identity = await joined;
    assert.deepEqual(identity, { clusterId: CLUSTER, localId: 42, from: 5 });
  } finally {
    await leader.close();
  }
});

test('an authenticated link that stays silent is closed at the idle timeout', async () => {
  const b = await startNode(2, { limits: { idleTimeoutMs: 300, keepaliveIntervalMs: 100 } });
  try {
    const peer = await RawPeer.connect(b.address);
    const attempt = await attemptHandshake(peer, {
      clusterId: CLUSTER,
      from: 5,
      to: 2,
      secret: SECRET,
    });
    assert.equal(attempt.accepted, true);
    // Pings keep it open for a while...
    const pingUntil = performance.now() + 900;
    while (performance.now() < pingUntil) {
      peer.write(packFrame(FrameType.Ping, []));
      await sleep(50);
    }
    assert.equal(peer.closed, false, 'a pinging link stays open');
    // ...silence does not.
    assert.ok(await peer.waitClosed(2_000), 'closed once silent');
    assert.ok(b.logger.entries.some((e) => /idle peer connection closed/.test(e.message)));
  } finally {
    await b.close();
  }
});

test('a quiet link between live transports is never cut: the dialer pings', async () => {
  const limits = { idleTimeoutMs: 300, keepaliveIntervalMs: 100 };
  const a = await startNode(1, { limits });
  const b = await startNode(2, { limits });
  try {
    a.transport.setPeer(2, [b.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitUntil(() => b.inbox.length === 1, 'first message');
    await sleep(1_500); // five idle timeouts without Raft traffic
    const link = a.transport.peerStatus(2)!.links[0]!;
    assert.equal(link.connects, 1, 'the link was never re-established');
    assert.equal(link.state, 'connected');
    assert.equal(b.transport.status().inboundConnections, 1);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitUntil(() => b.inbox.length === 2, 'a message on the same link');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('unauthenticated connections: a global cap besides the per-address one', async () => {
  const b = await startNode(2, { limits: { handshakesMax: 4, handshakesPerSourceMax: 2 } });
  const held: RawPeer[] = [];
  try {
    for (const source of ['127.0.0.2', '127.0.0.2', '127.0.0.3', '127.0.0.3']) {
      held.push(await RawPeer.connect(b.address, source));
    }
    const third = await RawPeer.connect(b.address, '127.0.0.2');
    assert.ok(await third.waitClosed(1_000), 'per-address cap');
    const fifth = await RawPeer.connect(b.address, '127.0.0.4');
    assert.ok(await fifth.waitClosed(1_000), 'global cap');
    assert.ok(held.every((p) => !p.closed));
    assert.equal(b.transport.status().refusedConnections, 2);
  } finally {
    for (const p of held) p.destroy();
    await b.close();
  }
});

/** A SNAP_BEGIN announcing `bytes` (the receiver allocates them, within its budget). */
function snapBegin(from: number, id: number, bytes: number): Buffer {
  const confState = { voters: [1, 2], learners: [], votersOutgoing: [], learnersNext: [] };
  const snapshot = {
    metadata: { index: 9, term: 1, confState: { ...confState, autoLeave: false } },
    data: new Uint8Array(0),
  };
  const m = newMessage({ type: MessageType.Snap, to: 2, from, term: 1, snapshot });
  return encodeSnapBeginFrame(id, bytes, m);
}

test('snapshot bytes being received stay within the budget; a closed stream returns its share', async () => {
  const budget = 1024 * 1024;
  const b = await startNode(2, {
    limits: { snapshotBytesMax: budget, snapshotReceiveBudgetBytes: budget },
  });
  try {
    const first = await RawPeer.connect(b.address);
    assert.equal(
      (await attemptHandshake(first, { clusterId: CLUSTER, from: 5, to: 2, secret: SECRET }))
        .accepted,
      true,
    );
    first.write(snapBegin(5, 1, 700 * 1024));
    await waitUntil(() => b.transport.status().snapshotReceiveBytes === 700 * 1024, 'reserved');
    const second = await RawPeer.connect(b.address);
    await attemptHandshake(second, { clusterId: CLUSTER, from: 6, to: 2, secret: SECRET });
    second.write(snapBegin(6, 1, 700 * 1024));
    const status = await second.frame(FrameType.SnapStatus);
    assert.ok(status !== null, 'a status for the refused stream');
    assert.match(JSON.stringify(status.payload.toString('latin1')), /budget/);
    first.destroy();
    await waitUntil(() => b.transport.status().snapshotReceiveBytes === 0, 'released on close');
    second.write(snapBegin(6, 2, 700 * 1024));
    await waitUntil(() => b.transport.status().snapshotReceiveBytes === 700 * 1024, 'now fits');
    second.destroy();
    await waitUntil(() => b.transport.status().snapshotReceiveBytes === 0, 'released again');
  } finally {
    await b.close();
  }
});

test('members of different wire versions refuse each other, and both sides say why', async () => {
  const older = FRAME_VERSION - 1;
  const b = await startNode(2);
  const oldMember = net.createServer((socket) => {
    socket.on('error', () => {});
    // An older acceptor answers a HELLO in its own version (here a REFUSE, as a newer one does).
    socket.once('data', () => {
      const refusal = packFrame(FrameType.Refuse, ['frame version 3, expected 2']);
      refusal[4] = older;
      socket.end(refusal);
    });
  });
  await new Promise<void>((resolve) => oldMember.listen(0, '127.0.0.1', resolve));
  const a = await startNode(1);
  try {
    // An older dialer's HELLO: refused with a REFUSE that names both versions.
    const peer = await RawPeer.connect(b.address);
    const hello = encodeHello({ clusterId: CLUSTER, from: 5, to: 2, nonce: newNonce() });
    hello[4] = older;
    peer.write(hello);
    assert.ok(await peer.waitClosed(), 'closed');
    assert.match(
      peer.refusals().join(),
      new RegExp(`frame version ${older}, expected ${FRAME_VERSION}`),
    );
    assert.match(b.logger.errors().join('\n'), /refused peer connection: frame version/);
    // A newer dialer meeting an older acceptor: the answer's version is named in its log.
    const port = (oldMember.address() as net.AddressInfo).port;
    a.transport.setPeer(9, [`127.0.0.1:${port}`]);
    a.transport.send(9, [msg({ type: MessageType.Heartbeat, from: 1, to: 9 })]);
    await waitUntil(
      () =>
        a.logger
          .errors()
          .some((e) => e.includes(`frame version ${older}, expected ${FRAME_VERSION}`)),
      'the dialer logs the version mismatch',
    );
  } finally {
    await a.close();
    await b.close();
    await new Promise<void>((resolve) => oldMember.close(() => resolve()));
  }
});
