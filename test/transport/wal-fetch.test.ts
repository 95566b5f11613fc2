/**
 * Fetching committed entries from peers (src/transport/fetch.ts and fetch-protocol.ts) over real
 * TCP on 127.0.0.1: running transports answer from their raft storage (committed, uncompacted
 * entries only), the requester pages through big ranges, skips peers that compacted or have not
 * committed the range, rejects wrong answers and other clusters, and a WAL damaged in every copy
 * is repaired through it end to end (Wal.open with the peer repair hook).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { Entry } from '../../src/raft/types.js';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import { NodeFileSystem } from '../../src/storage/fs.js';
import { RecordType } from '../../src/storage/wal/format.js';
import { scanSegment } from '../../src/storage/wal/scan.js';
import { Wal } from '../../src/storage/wal/wal.js';
import { packFrame } from '../../src/transport/codec.js';
import {
  type FetchPeer,
  fetchCommittedFromPeers,
  peerRepairHook,
} from '../../src/transport/fetch.js';
import { FETCH_RESPONSE_BYTES_MAX } from '../../src/transport/fetch-protocol.js';
import { FrameType } from '../../src/transport/frame.js';
import { clusterSecret } from '../../src/transport/handshake.js';
import { TcpTransport } from '../../src/transport/transport.js';
import { tempDir } from '../storage/helpers.js';
import { authenticatedSocket, SECRET } from './helpers.js';

const CLUSTER = 'c0ffee';
const transports: TcpTransport[] = [];
after(async () => {
  for (const t of transports) await t.close();
});

function ent(index: number, term: number, bytes = 8): Entry {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (index * 31 + i) & 0xff;
  return { index, term, type: 0, data };
}

/** A running peer: a transport on 127.0.0.1 serving `entries` committed through `commit`. */
async function peer(
  id: number,
  entries: readonly Entry[],
  commit: number,
  compactTo = 0,
): Promise<FetchPeer & { transport: TcpTransport }> {
  const storage = new MemoryStorage();
  storage.append(entries);
  if (compactTo > 0) storage.compact(compactTo);
  const transport = new TcpTransport({
    id,
    clusterId: CLUSTER,
    secret: SECRET,
    listen: [{ host: '127.0.0.1', port: 0 }],
  });
  transports.push(transport);
  const addresses = await transport.listen();
  transport.serveFetch(() => ({ storage, commitIndex: commit }));
  return { id, addresses, transport };
}

/** Entries as plain values (decoded data is a Buffer view, the originals Uint8Arrays). */
function plain(entries: readonly Entry[]): unknown[] {
  return entries.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString('hex')]);
}

const LOG = Array.from({ length: 30 }, (_, i) => ent(i + 1, i < 10 ? 1 : 2));
const accept = () => null;
const opts = (peers: readonly FetchPeer[], extra = {}) => ({
  clusterId: CLUSTER,
  secret: SECRET,
  localId: 99,
  peers: () => peers,
  timeoutMs: 2_000,
  backoffMinMs: 20,
  backoffMaxMs: 40,
  ...extra,
});

test('a peer that compacted the range is skipped; the next one serves it', async () => {
  const compacted = await peer(1, LOG, 30, 20);
  const full = await peer(2, LOG, 25);
  const got = await fetchCommittedFromPeers(
    opts([compacted, full], { roundsMax: 1 }),
    { firstIndex: 5, lastIndex: 22 },
    accept,
  );
  assert.deepEqual(plain(got), plain(LOG.slice(4, 22)));
});

test('entries above a peer commit index are never served', async () => {
  const behind = await peer(3, LOG, 12);
  await assert.rejects(
    fetchCommittedFromPeers(
      opts([behind], { roundsMax: 2 }),
      { firstIndex: 10, lastIndex: 14 },
      accept,
    ),
    /has not committed 13 \(commit 12\)/,
  );
});

test('big ranges come in pages of bounded bytes over one connection', async () => {
  const entryBytes = Math.floor(FETCH_RESPONSE_BYTES_MAX / 3) + 1;
  const big = Array.from({ length: 7 }, (_, i) => ent(i + 1, 1, entryBytes));
  const p = await peer(4, big, 7);
  const got = await fetchCommittedFromPeers(
    opts([p], { roundsMax: 1 }),
    { firstIndex: 1, lastIndex: 7 },
    accept,
  );
  assert.equal(got.length, 7);
  for (let i = 0; i < 7; i++)
    assert.ok(Buffer.from(got[i]!.data).equals(Buffer.from(big[i]!.data)));
});

test('an answer the check refuses is dropped and another peer asked; another cluster is refused', async () => {
  const liarLog = LOG.map((e) => (e.index === 8 ? { ...e, term: 5 } : e));
  const liar = await peer(5, liarLog, 30);
  const honest = await peer(6, LOG, 30);
  const checked: number[] = [];
  const check = (entries: readonly Entry[]) => {
    checked.push(entries.length);
    return entries.every((e, i) => i === 0 || e.term >= entries[i - 1]!.term)
      ? null
      : 'terms go back';
  };
  const got = await fetchCommittedFromPeers(
    opts([liar, honest], { roundsMax: 1 }),
    { firstIndex: 6, lastIndex: 12 },
    check,
  );
  assert.deepEqual(plain(got), plain(LOG.slice(5, 12)));
  assert.deepEqual(checked, [7, 7]);

  await assert.rejects(
    fetchCommittedFromPeers(
      opts([honest], { roundsMax: 1, clusterId: 'other' }),
      { firstIndex: 1, lastIndex: 2 },
      accept,
    ),
    /refused the handshake: cluster id mismatch/,
  );
  // A member with another secret is not asked (and says why).
  await assert.rejects(
    fetchCommittedFromPeers(
      opts([honest], { roundsMax: 1, secret: clusterSecret('not-the-cluster-secret-at-all') }),
      { firstIndex: 1, lastIndex: 2 },
      accept,
    ),
    /node 6 failed authentication \(does its cluster.secret differ\?\)/,
  );
});

test('a malformed request closes that connection only; the peer keeps serving', async () => {
  const p = await peer(7, LOG, 30);
  const socket = await authenticatedSocket(p.addresses[0]!, {
    from: 42,
    to: 7,
    clusterId: CLUSTER,
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.resume(); // read, so the peer's close is seen
  socket.write(packFrame(FrameType.FetchRequest, [9, 3, 100])); // last before first
  await closed;
  const got = await fetchCommittedFromPeers(
    opts([p], { roundsMax: 1 }),
    { firstIndex: 1, lastIndex: 3 },
    accept,
  );
  assert.deepEqual(plain(got), plain(LOG.slice(0, 3)));
});

test('end to end below the process: a WAL damaged in every copy is repaired from a peer over TCP', async () => {
  const real = new NodeFileSystem();
  const dir = tempDir();
  const walOpts = {
    fs: real,
    dir: join(dir, 'a'),
    mirrorDir: join(dir, 'b'),
    clusterId: 1,
    memberId: 99,
  };
  const { wal } = await Wal.open(walOpts);
  for (let i = 0; i < 30; i += 3) {
    await wal.save({ term: 2, vote: 1, commit: i }, LOG.slice(i, i + 3), null);
  }
  await wal.save({ term: 2, vote: 1, commit: 30 }, [], null);
  await wal.close();
  // Damage the record of entry 17 in both copies.
  const name = readdirSync(walOpts.dir).find((n) => n.endsWith('.wal'))!;
  const bytes = new Uint8Array(readFileSync(join(walOpts.dir, name)));
  let at = -1;
  scanSegment([{ bytes, view: new DataView(bytes.buffer) }], 0, (batch) => {
    for (const r of batch) {
      const view = new DataView(bytes.buffer);
      if (r.type === RecordType.Entry && view.getUint32(r.payloadAt, true) === 17) at = r.payloadAt;
    }
  });
  assert.ok(at > 0);
  const fs = new FaultyFileSystem(real);
  await fs.flipBit(join(walOpts.dir, name), at + 30, 2);
  await fs.flipBit(join(walOpts.mirrorDir, name), at + 28, 6);

  const down = { id: 11, addresses: ['127.0.0.1:1'] }; // nothing listens there
  const p = await peer(12, LOG, 30);
  const lines: string[] = [];
  const logger = {
    error: () => {},
    debug: () => {},
    info: () => {},
    warn: (_o: object, m: string) => lines.push(m),
  };
  const got = await Wal.open({ ...walOpts, repair: peerRepairHook(opts([down, p], { logger })) });
  assert.deepEqual(plain(got.entries), plain(LOG));
  // Commit 12 was known before the damaged batch (16..18): 13..17 are in doubt.
  assert.deepEqual(got.stats.fetched, [{ firstIndex: 13, lastIndex: 17 }]);
  assert.ok(
    lines.some((l) =>
      /WAL record at .*\.wal:\d+ damaged in every copy; fetching committed entries 13\.\.17 from peers/.test(
        l,
      ),
    ),
    lines.join('\n'),
  );
  await got.wal.close();
  const again = await Wal.open(walOpts);
  assert.deepEqual(plain(again.entries), plain(LOG));
  assert.deepEqual(again.stats.damaged, []);
  await again.wal.close();
});
