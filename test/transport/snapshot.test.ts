import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { MessageType } from '../../src/raft/types.js';
import { packFrame } from '../../src/transport/codec.js';
import { FrameDecoder, FrameType, SNAP_CHUNK_HEADER_BYTES } from '../../src/transport/frame.js';
import {
  decodeHello,
  encodeChallenge,
  type HandshakeTranscript,
  handshakeProof,
  newNonce,
} from '../../src/transport/handshake.js';
import { CLUSTER, msg, SECRET, sleep, startNode, waitUntil } from './helpers.js';

const CHUNK = 16 * 1024;
const WINDOW = 64 * 1024;

/**
 * A fake node 2 that completes the handshake and counts snapshot chunk bytes but never
 * acknowledges them: the sender must stop at its window, then give up at the stall timeout.
 */
async function silentReceiver() {
  const state = { chunkBytes: 0, chunks: 0, sockets: new Set<net.Socket>() };
  const server = net.createServer((socket) => {
    state.sockets.add(socket);
    socket.on('close', () => state.sockets.delete(socket));
    socket.on('error', () => {});
    let transcript: HandshakeTranscript | null = null;
    const decoder = new FrameDecoder(
      {
        onFrame(type, payload) {
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
          }
          if (type === FrameType.Auth) socket.write(packFrame(FrameType.HelloOk, [CLUSTER, 2]));
          if (type === FrameType.SnapChunk) {
            state.chunks += 1;
            state.chunkBytes += payload.length - SNAP_CHUNK_HEADER_BYTES;
          }
        },
      },
      1 << 20,
    );
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const close = async () => {
    for (const s of state.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { state, address: `127.0.0.1:${port}`, close };
}

const confState = {
  voters: [1, 2],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};

test('snapshot flow control: the sender stops at its window, then fails on stall', async () => {
  const receiver = await silentReceiver();
  const a = await startNode(1, {
    limits: { snapshotChunkBytes: CHUNK, snapshotWindowBytes: WINDOW, snapshotStallTimeoutMs: 400 },
  });
  try {
    a.transport.setPeer(2, [receiver.address]);
    const snapshot = { metadata: { index: 9, term: 2, confState }, data: new Uint8Array(1 << 20) };
    a.transport.send(2, [msg({ type: MessageType.Snap, snapshot })]);
    await waitUntil(() => receiver.state.chunkBytes === WINDOW, 'a full window');
    await sleep(150);
    assert.equal(receiver.state.chunkBytes, WINDOW, 'nothing past the window without acks');
    assert.equal(receiver.state.chunks, WINDOW / CHUNK);
    const status = a.transport.peerStatus(2)!.snapshot!;
    assert.deepEqual([status.bytesSent, status.bytesAcked], [WINDOW, 0]);
    // Heartbeats still flow while the snapshot is blocked (same connection, own frames).
    await waitUntil(() => a.reports.some((r) => r.kind === 'snapshot'), 'stall report', 3_000);
    assert.deepEqual(
      a.reports.filter((r) => r.kind === 'snapshot'),
      [{ kind: 'snapshot', peer: 2, ok: false }],
    );
    assert.equal(a.transport.peerStatus(2)!.snapshot, null);
  } finally {
    await Promise.all([a.close(), receiver.close()]);
  }
});

test('a second snapshot while one streams is refused at once; the link loss fails the first', async () => {
  const receiver = await silentReceiver();
  const a = await startNode(1, {
    limits: { snapshotChunkBytes: CHUNK, snapshotWindowBytes: WINDOW },
  });
  try {
    a.transport.setPeer(2, [receiver.address]);
    const snapshot = { metadata: { index: 9, term: 2, confState }, data: new Uint8Array(1 << 20) };
    a.transport.send(2, [msg({ type: MessageType.Snap, snapshot })]);
    a.transport.send(2, [msg({ type: MessageType.Snap, snapshot })]);
    await waitUntil(() => a.reports.length === 1, 'busy refusal');
    assert.deepEqual(a.reports, [{ kind: 'snapshot', peer: 2, ok: false }]);
    assert.equal(a.transport.peerStatus(2)!.dropped.snapshotBusy, 1);
    await waitUntil(() => receiver.state.chunkBytes === WINDOW, 'stream started');
    await receiver.close(); // the link dies mid-stream
    await waitUntil(
      () => a.reports.filter((r) => r.kind === 'snapshot').length === 2,
      'failure of the first',
    );
    assert.deepEqual(
      a.reports.filter((r) => r.kind === 'snapshot'),
      [
        { kind: 'snapshot', peer: 2, ok: false },
        { kind: 'snapshot', peer: 2, ok: false },
      ],
    );
    assert.ok(a.reports.some((r) => r.kind === 'unreachable'));
  } finally {
    await Promise.all([a.close(), receiver.close()]);
  }
});

test('snapshots of 0 bytes and exactly one chunk are delivered', async () => {
  const a = await startNode(1, {
    limits: { snapshotChunkBytes: CHUNK, snapshotWindowBytes: WINDOW },
  });
  const b = await startNode(2);
  try {
    a.transport.setPeer(2, [b.address]);
    for (const size of [0, CHUNK, CHUNK + 1]) {
      const data = Uint8Array.from({ length: size }, (_, i) => (i * 7) & 0xff);
      const snapshot = { metadata: { index: size, term: 2, confState }, data };
      a.transport.send(2, [msg({ type: MessageType.Snap, snapshot })]);
      await waitUntil(() => b.inbox.length === 1, `snapshot of ${size} bytes`);
      const got = b.inbox.pop()!;
      assert.equal(got.snapshot!.metadata.index, size);
      assert.deepEqual(Buffer.from(got.snapshot!.data), Buffer.from(data));
      // Like Raft, send the next snapshot only after the report of the previous one.
      await waitUntil(() => a.reports.length > 0, `report of ${size} bytes`);
      assert.deepEqual(a.reports.splice(0), [{ kind: 'snapshot', peer: 2, ok: true }]);
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});
