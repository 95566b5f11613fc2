import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { type Message, MessageType } from '../../src/raft/types.js';
import { parseAddress } from '../../src/transport/address.js';
import { packFrame } from '../../src/transport/codec.js';
import { TransportError } from '../../src/transport/errors.js';
import { FrameType, writeFrameHeader } from '../../src/transport/frame.js';
import { FRAME_VERSION } from '../../src/transport/limits.js';
import { Prng } from '../../src/util/prng.js';
import {
  ALL_MESSAGE_TYPES,
  authenticatedSocket,
  canon,
  msg,
  type Node,
  startNode,
  waitUntil,
} from './helpers.js';

/** Two transports that know each other; `fn` runs with both, and both are always closed. */
async function withPair(
  fn: (a: Node, b: Node) => Promise<void>,
  options: Parameters<typeof startNode>[1] = {},
): Promise<void> {
  const a = await startNode(1, options);
  const b = await startNode(2, options);
  try {
    a.transport.setPeer(2, [b.address]);
    b.transport.setPeer(1, [a.address]);
    await fn(a, b);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

test('every message type round-trips over TCP, with binary entries', async () => {
  await withPair(async (a, b) => {
    const rng = new Prng(3);
    const sent: Message[] = ALL_MESSAGE_TYPES.filter((t) => t !== MessageType.Snap).map((type) =>
      msg({
        type,
        term: type + 1,
        index: 2 ** 33,
        context: Uint8Array.from([type, 0, 255]),
        entries: [
          {
            term: 1,
            index: 7,
            type: 0,
            data: Uint8Array.from({ length: 4096 }, () => rng.int(256)),
          },
        ],
      }),
    );
    a.transport.send(2, sent);
    await waitUntil(() => b.inbox.length === sent.length, 'all message types');
    assert.deepEqual(canon(b.inbox), canon(sent));
    // And the other direction, on the other connection.
    b.transport.send(1, [msg({ type: MessageType.AppResp, from: 2, to: 1, index: 9 })]);
    await waitUntil(() => a.inbox.length === 1, 'reply');
    assert.equal(a.inbox[0]!.index, 9);
  });
});

test('many messages arrive in order, batched into few frames', async () => {
  await withPair(async (a, b) => {
    await waitUntil(() => a.transport.peerStatus(2)!.activeAddress !== null, 'connection');
    const count = 20_000;
    const perTurn = 2_000; // within the queue bound: the ring is flushed once per turn
    for (let turn = 0; turn < count; turn += perTurn) {
      // Several send() calls per turn, like a Ready loop with messages for one peer.
      for (let i = turn; i < turn + perTurn; i += 100) {
        const batch: Message[] = [];
        for (let j = i; j < i + 100; j++) batch.push(msg({ type: MessageType.App, index: j }));
        a.transport.send(2, batch);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    await waitUntil(() => b.inbox.length === count, `${count} messages`, 10_000);
    for (let i = 0; i < count; i++) assert.equal(b.inbox[i]!.index, i);
    const status = a.transport.peerStatus(2)!;
    assert.equal(status.sentMessages, count);
    assert.equal(status.dropped.queueFull, 0);
    // Batches of up to BATCH_MESSAGES_MAX per frame, one flush per turn.
    assert.ok(status.sentFrames <= count / 500, `${status.sentFrames} frames for ${count}`);
  });
});

test('a snapshot streams in chunks under flow control and is reported finished', async () => {
  const limits = { snapshotChunkBytes: 64 * 1024, snapshotWindowBytes: 128 * 1024 };
  await withPair(
    async (a, b) => {
      const rng = new Prng(5);
      const data = Uint8Array.from({ length: 1_000_003 }, () => rng.int(256));
      const snap = msg({
        type: MessageType.Snap,
        term: 3,
        snapshot: {
          metadata: {
            index: 500,
            term: 3,
            confState: {
              voters: [1, 2, 3],
              learners: [],
              votersOutgoing: [],
              learnersNext: [],
              autoLeave: false,
            },
          },
          data,
        },
      });
      // Heartbeats sent meanwhile are not stuck behind the whole image.
      a.transport.send(2, [snap, msg({ type: MessageType.Heartbeat })]);
      await waitUntil(() => a.reports.some((r) => r.kind === 'snapshot'), 'snapshot report');
      assert.deepEqual(a.reports, [{ kind: 'snapshot', peer: 2, ok: true }]);
      const got = b.inbox.find((m) => m.type === MessageType.Snap)!;
      assert.deepEqual(canon(got), canon(snap));
      assert.ok(b.inbox.some((m) => m.type === MessageType.Heartbeat));
      const frames = a.transport.peerStatus(2)!.sentFrames;
      assert.ok(frames >= Math.ceil(data.length / (64 * 1024)), `chunks: ${frames} frames`);
      assert.equal(a.transport.peerStatus(2)!.snapshot, null);
    },
    { limits },
  );
});

test('a snapshot over the receiver limit is refused and reported failed', async () => {
  const a = await startNode(1);
  const b = await startNode(2, { limits: { snapshotBytesMax: 100_000 } });
  try {
    a.transport.setPeer(2, [b.address]);
    const snapshot = {
      metadata: {
        index: 1,
        term: 1,
        confState: {
          voters: [1],
          learners: [],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        },
      },
      data: new Uint8Array(300_000),
    };
    a.transport.send(2, [msg({ type: MessageType.Snap, snapshot })]);
    await waitUntil(() => a.reports.some((r) => r.kind === 'snapshot'), 'snapshot report');
    assert.deepEqual(
      a.reports.filter((r) => r.kind === 'snapshot'),
      [{ kind: 'snapshot', peer: 2, ok: false }],
    );
    assert.equal(b.inbox.length, 0);
    // The connection survives the refusal: later messages still flow.
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 42 })]);
    await waitUntil(() => b.inbox.length === 1, 'heartbeat after refusal');
    assert.equal(b.inbox[0]!.commit, 42);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('reconnects after the peer restarts, with backoff', async () => {
  const a = await startNode(1);
  let b = await startNode(2);
  try {
    a.transport.setPeer(2, [b.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 1 })]);
    await waitUntil(() => b.inbox.length === 1, 'first message');
    const { port } = parseAddress(b.address);
    await b.close();
    await waitUntil(() => a.reports.some((r) => r.kind === 'unreachable'), 'unreachable report');
    await waitUntil(() => a.transport.peerStatus(2)!.failedRounds >= 2, 'failed rounds');
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 2 })]);
    b = await startNode(2, { listen: [{ host: '127.0.0.1', port }] });
    await waitUntil(() => b.inbox.length === 1, 'message after restart');
    assert.equal(b.inbox[0]!.commit, 2); // queued while down, delivered after reconnect
    const link = a.transport.peerStatus(2)!.links[0]!;
    assert.equal(link.state, 'connected');
    assert.ok(link.connects >= 2 && link.failures >= 2, JSON.stringify(link));
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('a peer that dials us cuts our backoff short: we redial it at once', async () => {
  // A backoff far longer than the test's wait: only the peer's own connection can end it.
  const limits = { backoffMinMs: 20_000, backoffMaxMs: 20_000 };
  const a = await startNode(1, { limits });
  let b = await startNode(2);
  try {
    a.transport.setPeer(2, [b.address]);
    const { port } = parseAddress(b.address);
    await b.close();
    await waitUntil(() => a.transport.peerStatus(2)!.failedRounds >= 1, 'a failed round');
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 7 })]);
    b = await startNode(2, { listen: [{ host: '127.0.0.1', port }] });
    b.transport.setPeer(1, [a.address]); // the restarted peer dials us at once, as members do
    // waitUntil gives up after 5 s, a quarter of the backoff.
    await waitUntil(() => b.inbox.length === 1, 'the queued message after the peer dialed us');
    assert.equal(b.inbox[0]!.commit, 7);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('the queue is bounded while a peer is down: oldest dropped, counted, reported', async () => {
  const a = await startNode(1, { limits: { queueMessagesMax: 64 } });
  // A port with nothing behind it: take one from the OS, then free it.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  try {
    a.transport.setPeer(2, [`127.0.0.1:${port}`]);
    for (let i = 0; i < 1000; i++) {
      a.transport.send(2, [msg({ type: MessageType.App, index: i })]);
    }
    const status = a.transport.peerStatus(2)!;
    assert.equal(status.queuedMessages, 64);
    assert.equal(status.dropped.queueFull, 1000 - 64);
    await waitUntil(() => a.reports.some((r) => r.kind === 'unreachable'), 'unreachable');
    // The peer comes up: the newest 64 messages are delivered, in order.
    const b = await startNode(2, { listen: [{ host: '127.0.0.1', port }] });
    try {
      await waitUntil(() => b.inbox.length === 64, 'queued messages');
      assert.deepEqual(
        b.inbox.map((m) => m.index),
        Array.from({ length: 64 }, (_, i) => 1000 - 64 + i),
      );
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
});

test('send never throws: unknown peer, oversized message, closed transport', async () => {
  const a = await startNode(1, {
    limits: {
      frameBytesMax: 64 * 1024,
      queueBytesMax: 64 * 1024,
      snapshotChunkBytes: 16 * 1024,
      snapshotWindowBytes: 16 * 1024,
    },
  });
  try {
    a.transport.send(9, [msg({ type: MessageType.Snap, to: 9 }), msg({ type: MessageType.App })]);
    await waitUntil(() => a.reports.length >= 2, 'reports for unknown peer');
    assert.deepEqual(a.reports, [
      { kind: 'snapshot', peer: 9, ok: false },
      { kind: 'unreachable', peer: 9 },
    ]);
    assert.equal(a.transport.status().droppedUnknownPeer, 2);
    a.transport.setPeer(2, ['127.0.0.1:1']);
    const huge = { term: 1, index: 1, type: 0 as const, data: new Uint8Array(100 * 1024) };
    a.transport.send(2, [msg({ type: MessageType.App, entries: [huge] })]);
    assert.equal(a.transport.peerStatus(2)!.dropped.oversized, 1);
    assert.ok(a.logger.errors().some((e) => e.includes('larger than a frame')));
  } finally {
    await a.close();
  }
  a.transport.send(2, [msg({ type: MessageType.App })]);
  assert.throws(() => a.transport.setPeer(3, ['127.0.0.1:2']), TransportError);
});

test('a peer with another cluster id is refused with a logged error', async () => {
  const a = await startNode(1, { clusterId: 'other-cluster' });
  const b = await startNode(2);
  try {
    a.transport.setPeer(2, [b.address]);
    a.transport.send(2, [msg({ type: MessageType.Heartbeat })]);
    await waitUntil(
      () => b.logger.errors().some((e) => e.includes('cluster id mismatch')),
      'refusal',
    );
    await waitUntil(() => a.logger.errors().some((e) => e.includes('refused')), 'dialer error');
    await waitUntil(() => a.reports.some((r) => r.kind === 'unreachable'), 'unreachable report');
    assert.equal(b.inbox.length, 0);
    const link = a.transport.peerStatus(2)!.links[0]!;
    assert.notEqual(link.state, 'connected');
    assert.match(link.lastError ?? '', /cluster id mismatch/);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('a wrong node at the address is refused by the dialer', async () => {
  const a = await startNode(1);
  const c = await startNode(3);
  try {
    a.transport.setPeer(2, [c.address]); // node 3 listens where node 2 was expected
    await waitUntil(() => a.logger.errors().length > 0, 'dialer error');
    assert.equal(a.transport.peerStatus(2)!.links[0]!.connects, 0);
  } finally {
    await Promise.all([a.close(), c.close()]);
  }
});

/** Opens a raw socket to `address`, writes `bytes`, resolves when the server closes it. */
function rawExchange(address: string, bytes: Buffer[]): Promise<void> {
  const { host, port } = parseAddress(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('server did not close the connection'));
    }, 3_000);
    socket.on('connect', () => {
      for (const b of bytes) socket.write(b);
    });
    socket.on('data', () => {});
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Like rawExchange, after completing the handshake as node 5 (an authenticated peer). */
async function authenticatedExchange(address: string, bytes: Buffer[]): Promise<void> {
  const socket = await authenticatedSocket(address, { from: 5, to: 2 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('server did not close the connection'));
    }, 3_000);
    socket.on('data', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    for (const b of bytes) socket.write(b);
  });
}

test('oversized frames and garbage close that connection; the server keeps serving', async () => {
  await withPair(async (a, b) => {
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 1 })]);
    await waitUntil(() => b.inbox.length === 1, 'first message');

    // Before the handshake a large length is refused at the header (no allocation).
    const bigHeader = Buffer.alloc(6);
    writeFrameHeader(bigHeader, 0, FrameType.Messages, 10 * 1024 * 1024);
    await rawExchange(b.address, [bigHeader]);
    // After the handshake a frame over the limit is refused too.
    const overHeader = Buffer.alloc(6);
    overHeader.writeUInt32BE(16 * 1024 * 1024 + 3, 0);
    overHeader[4] = FRAME_VERSION;
    overHeader[5] = FrameType.Messages;
    await authenticatedExchange(b.address, [overHeader]);
    // Random garbage, before and after a handshake.
    const rng = new Prng(99);
    for (let i = 0; i < 5; i++) {
      const garbage = Buffer.from(Uint8Array.from({ length: 64 + i * 100 }, () => rng.int(256)));
      await rawExchange(b.address, [garbage]);
      await authenticatedExchange(b.address, [garbage]);
    }
    // A well-framed payload that is not a message batch.
    const junk = packFrame(FrameType.Messages, [[1, 2, 3]]);
    await authenticatedExchange(b.address, [junk]);

    assert.ok(b.logger.errors().length >= 10, b.logger.errors().join('\n'));
    assert.equal(b.inbox.length, 1, 'nothing from the garbage was delivered');
    // The legitimate connection and the listener both still work.
    a.transport.send(2, [msg({ type: MessageType.Heartbeat, commit: 2 })]);
    await waitUntil(() => b.inbox.length === 2, 'message after garbage');
    const fresh = await startNode(3);
    try {
      fresh.transport.setPeer(2, [b.address]);
      fresh.transport.send(2, [msg({ type: MessageType.Heartbeat, from: 3, commit: 3 })]);
      await waitUntil(() => b.inbox.length === 3, 'message from a new peer');
    } finally {
      await fresh.close();
    }
    await waitUntil(() => b.transport.status().inboundConnections === 1, 'garbage sockets closed');
  });
});

test('a silent connection is closed at the handshake timeout', async () => {
  const b = await startNode(2, { limits: { handshakeTimeoutMs: 100 } });
  try {
    const started = performance.now();
    await rawExchange(b.address, []);
    assert.ok(performance.now() - started < 2_000);
  } finally {
    await b.close();
  }
});

test('flush() writes what send() queued at once; without it the write waits for the turn to end', async () => {
  await withPair(async (a, b) => {
    await waitUntil(() => a.transport.peerStatus(2)!.activeAddress !== null, 'connection');
    const sent = (): number => a.transport.peerStatus(2)!.sentMessages;
    // Without flush: still queued when send() returns (one writev per peer per turn).
    a.transport.send(2, [msg({ type: MessageType.App, index: 1 })]);
    assert.equal(sent(), 0, 'queued until the end of the turn');
    await waitUntil(() => sent() === 1, 'the end-of-turn flush');
    // With flush: on the socket before this synchronous code goes on (a Ready's appends leave
    // before the member's WAL write and apply).
    a.transport.send(2, [msg({ type: MessageType.App, index: 2 })]);
    a.transport.send(2, [msg({ type: MessageType.App, index: 3 })]);
    a.transport.flush();
    assert.equal(sent(), 3, 'written by flush()');
    // The end-of-turn flush it replaced finds nothing left to write; order is kept.
    await waitUntil(() => b.inbox.length === 3, 'all three delivered');
    assert.deepEqual(
      b.inbox.map((m) => m.index),
      [1, 2, 3],
    );
    assert.equal(sent(), 3);
  });
});
