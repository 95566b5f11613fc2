/**
 * What the transport tells metrics (etcd_network_peer_*): bytes sent to and received from each
 * peer, and the round trip of a PING answered by a PONG on the same connection. Real TCP on
 * loopback between two transports.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { EntryType, MessageType, type NodeId } from '../../src/raft/types.js';
import { packFrame } from '../../src/transport/codec.js';
import { FrameDecoder, FrameType, pingFrame } from '../../src/transport/frame.js';
import {
  decodeHello,
  encodeChallenge,
  type HandshakeTranscript,
  handshakeProof,
  newNonce,
} from '../../src/transport/handshake.js';
import {
  FRAME_HEADER_BYTES,
  FRAME_VERSION,
  HANDSHAKE_FRAME_BYTES_MAX,
} from '../../src/transport/limits.js';
import { CLUSTER, msg, type Node, SECRET, startNode, waitUntil } from './helpers.js';

const PING_INTERVAL_MS = 50;
const MESSAGES = 200;
const ENTRY_BYTES = 1024;

async function withPair(
  fn: (a: Node, b: Node, trips: { peer: NodeId; seconds: number }[]) => Promise<void>,
): Promise<void> {
  const trips: { peer: NodeId; seconds: number }[] = [];
  const a = await startNode(1, {
    limits: { pingIntervalMs: PING_INTERVAL_MS },
    onRoundTrip: (peer, seconds) => trips.push({ peer, seconds }),
  });
  const b = await startNode(2, { limits: { pingIntervalMs: PING_INTERVAL_MS } });
  try {
    a.transport.setPeer(2, [b.address]);
    b.transport.setPeer(1, [a.address]);
    await fn(a, b, trips);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

test('bytes sent to a peer are the bytes it received from us, and grow with traffic', async () => {
  await withPair(async (a, b) => {
    await waitUntil(() => a.transport.peerStatus(2)?.activeAddress != null, 'a connected');
    const entries = [
      { term: 1, index: 1, type: EntryType.Normal, data: new Uint8Array(ENTRY_BYTES) },
    ];
    for (let i = 0; i < MESSAGES; i++) {
      a.transport.send(2, [msg({ type: MessageType.App, index: i, entries })]);
    }
    await waitUntil(() => b.inbox.length === MESSAGES, 'all messages');
    const sent = () => a.transport.traffic().get(2)?.sentBytes ?? 0;
    const received = () => b.transport.traffic().get(1)?.receivedBytes ?? 0;
    assert.ok(sent() >= MESSAGES * ENTRY_BYTES, `sent ${sent()}`);
    // The receiver counts what arrives after the handshake: the same frames (pings included),
    // once the last PING in flight has landed.
    await waitUntil(() => sent() === received(), `received ${received()} = sent ${sent()}`);
    // Each side counts only its own direction of the other's link.
    assert.ok((a.transport.traffic().get(2)?.receivedBytes ?? 0) < sent());
  });
});

test('a PING is answered on the same connection and timed', async () => {
  await withPair(async (_a, _b, trips) => {
    await waitUntil(() => trips.length >= 3, 'three round trips', 5_000);
    for (const t of trips) {
      assert.equal(t.peer, 2);
      assert.ok(t.seconds > 0 && t.seconds < 1, `loopback round trip ${t.seconds} s`);
    }
  });
});

test('a PONG to a PING we never sent, or of the wrong size, times nothing or closes the link', async () => {
  // A fake acceptor that answers the handshake, then a PONG nobody asked for, then a bad one.
  const trips: number[] = [];
  const server = net.createServer((socket) => {
    let transcript: HandshakeTranscript | null = null;
    const decoder = new FrameDecoder(
      {
        onFrame: (type, payload) => {
          if (type === FrameType.Hello) {
            const hello = decodeHello(payload);
            transcript = {
              clusterId: CLUSTER,
              dialerId: hello.from,
              acceptorId: 2,
              dialerNonce: hello.nonce,
              acceptorNonce: newNonce(),
            };
            socket.write(
              encodeChallenge({
                clusterId: CLUSTER,
                acceptorId: 2,
                nonce: transcript.acceptorNonce,
                proof: handshakeProof(SECRET, 'acceptor', transcript),
              }),
            );
            return;
          }
          if (type !== FrameType.Auth || transcript === null) return;
          socket.write(packFrame(FrameType.HelloOk, [CLUSTER, 2]));
          socket.write(pingFrame(FrameType.RoundTripPong, 12345));
          setTimeout(() => {
            const bad = Buffer.alloc(FRAME_HEADER_BYTES + 2);
            bad.writeUInt32BE(4, 0);
            bad[4] = FRAME_VERSION;
            bad[5] = FrameType.RoundTripPong;
            socket.write(bad);
          }, 100);
        },
      },
      HANDSHAKE_FRAME_BYTES_MAX,
    );
    socket.on('data', (chunk) => decoder.push(chunk));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const a = await startNode(1, {
    limits: { pingIntervalMs: 10_000 },
    onRoundTrip: (_peer, seconds) => trips.push(seconds),
  });
  try {
    a.transport.setPeer(2, [`127.0.0.1:${port}`]);
    await waitUntil(
      () => a.logger.errors().some((e) => /ROUND_TRIP_PONG of the wrong size/.test(e)),
      'the malformed PONG closes the link',
    );
    assert.deepEqual(trips, [], 'the stray PONG (seq 12345) timed nothing');
  } finally {
    await a.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
