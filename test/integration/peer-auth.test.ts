/**
 * A stranger on the peer port of a real 3-member cluster (raw TCP from this test): a wrong
 * secret, a forged HELLO, a replayed HELLO and AUTH, an oversized frame before authentication, a
 * handshake that never finishes and too many connections from one address are all refused — and
 * none of it changes the cluster: the term (a forged heartbeat at term 1000 would raise it), the
 * commit index, the membership and the data are as before, and the cluster still serves.
 *
 * Positive controls keep the test honest: the same code with the real secret does get HELLO_OK.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember, MemberStatus } from '../../src/cli/local-cluster.js';
import { FrameType } from '../../src/transport/frame.js';
import { clusterSecret } from '../../src/transport/handshake.js';
import {
  FRAME_VERSION,
  HANDSHAKE_FRAME_BYTES_MAX,
  HANDSHAKE_TIMEOUT_MS,
  HANDSHAKES_PER_SOURCE_MAX,
} from '../../src/transport/limits.js';
import { attemptHandshake, forgedHeartbeat, frameHeader, RawPeer } from '../transport/stranger.js';
import { startCluster } from './cluster.js';

const FORGED_TERM = 1000;
const WRONG_SECRET = clusterSecret('a-stranger-guessed-this-secret');

let cluster: LocalCluster;
let leader: LocalMember;
let follower: LocalMember;
let leaderId: number;
let followerId: number;
let clusterId: string;
let before_: Map<string, MemberStatus>;

async function gateway(member: LocalMember, path: string, body: object): Promise<unknown> {
  const response = await fetch(`http://${member.spec.client}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

const b64 = (text: string): string => Buffer.from(text).toString('base64');

async function readKey(member: LocalMember, key: string): Promise<string | null> {
  const r = (await gateway(member, '/v3/kv/range', { key: b64(key) })) as {
    kvs?: { value?: string }[];
  };
  const value = r.kvs?.[0]?.value;
  return value === undefined ? null : Buffer.from(value, 'base64').toString();
}

/**
 * What must not change: per member, its term, leader and view of the membership; its commit
 * index may only have grown by the leader's own entries (a health record, say, on a loaded
 * machine), which an unchanged term and leader guarantee: a forged append would have to come
 * as that leader, and a forged vote would move the term.
 */
async function snapshotStatuses(): Promise<Map<string, MemberStatus>> {
  const statuses = await cluster.statuses(cluster.members);
  assert.equal(statuses.size, 3);
  return new Map([...statuses].map(([m, s]) => [m.name, s]));
}

function assertUnchanged(now: Map<string, MemberStatus>): void {
  for (const [name, was] of before_) {
    const is = now.get(name)!;
    assert.equal(is.term, was.term, `${name}: term`);
    assert.equal(is.leader, was.leader, `${name}: leader`);
    assert.ok(
      is.commitIndex >= was.commitIndex,
      `${name}: commit index ${is.commitIndex} < ${was.commitIndex}`,
    );
    assert.deepEqual(
      is.members.map((m) => m.id).sort(),
      was.members.map((m) => m.id).sort(),
      `${name}: members`,
    );
  }
}

describe('a stranger on the peer port', { timeout: 180_000 }, () => {
  before(async () => {
    // Fault injection on (rules unset, so inert): /status must say so.
    cluster = await startCluster({
      label: 'peer-auth',
      extraConfig: { testMode: { faultInjection: true } },
    });
    leader = await cluster.leader();
    follower = cluster.followers(leader)[0]!;
    await gateway(leader, '/v3/kv/put', { key: b64('guarded'), value: b64('v1') });
    await cluster.waitForCatchUp();
    const ls = await leader.status();
    const fs = await follower.status();
    leaderId = Number.parseInt(ls.memberId, 16);
    followerId = Number.parseInt(fs.memberId, 16);
    clusterId = ls.clusterId;
    // Settled: nothing in flight (the test compares commit indexes before and after).
    let last = -1;
    await cluster.waitUntil('the commit index to settle', 20_000, async () => {
      const c = (await leader.status()).commitIndex;
      const settled = c === last;
      last = c;
      return settled ? true : null;
    });
    before_ = await snapshotStatuses();
  });

  after(async () => {
    await cluster?.destroy({ kill: true });
  });

  test('/status says fault injection is on', async () => {
    for (const m of cluster.members) {
      const status = (await m.status()) as unknown as { testMode?: { faultInjection?: boolean } };
      assert.equal(status.testMode?.faultInjection, true, m.name);
    }
  });

  test('positive control: the real secret gets in (so the refusals below mean something)', async () => {
    const peer = await RawPeer.connect(follower.spec.peer);
    try {
      const attempt = await attemptHandshake(peer, {
        clusterId,
        from: leaderId,
        to: followerId,
        secret: clusterSecret(cluster.secret),
      });
      assert.equal(attempt.accepted, true, peer.refusals().join('; '));
    } finally {
      peer.destroy();
    }
  });

  test('a wrong secret is refused, and what follows is not read', async () => {
    for (const member of [follower, leader]) {
      const to = member === leader ? leaderId : followerId;
      const from = member === leader ? followerId : leaderId;
      const peer = await RawPeer.connect(member.spec.peer);
      const attempt = await attemptHandshake(peer, { clusterId, from, to, secret: WRONG_SECRET });
      peer.write(forgedHeartbeat(from, to, FORGED_TERM));
      assert.equal(attempt.accepted, false);
      assert.ok(await peer.waitClosed(), 'closed');
      assert.match(peer.refusals().join(), /authentication failed/);
    }
  });

  test('a forged HELLO (a member id, no proof) gets no further than the challenge', async () => {
    const peer = await RawPeer.connect(follower.spec.peer);
    const attempt = await attemptHandshake(peer, {
      clusterId,
      from: leaderId,
      to: followerId,
      secret: WRONG_SECRET,
      auth: forgedHeartbeat(leaderId, followerId, FORGED_TERM), // messages instead of AUTH
    });
    assert.equal(attempt.accepted, false);
    assert.ok(await peer.waitClosed(), 'closed');
    // A random proof of the right size fares no better.
    const second = await RawPeer.connect(follower.spec.peer);
    const random = await attemptHandshake(second, {
      clusterId,
      from: leaderId,
      to: followerId,
      secret: WRONG_SECRET,
      auth: Buffer.concat([
        frameHeader(FrameType.Auth, 2 + 35, FRAME_VERSION),
        Buffer.from([0x91, 0xc4, 32]),
        Buffer.alloc(32, 7),
      ]),
    });
    assert.equal(random.accepted, false);
    assert.ok(await second.waitClosed(), 'closed');
  });

  test('a recorded HELLO and AUTH replayed on a new connection are refused', async () => {
    // Record a genuine exchange (this test knows the secret, a stranger on the wire would not).
    const genuine = await RawPeer.connect(follower.spec.peer);
    const recorded = await attemptHandshake(genuine, {
      clusterId,
      from: leaderId,
      to: followerId,
      secret: clusterSecret(cluster.secret),
    });
    genuine.destroy();
    assert.equal(recorded.accepted, true);
    const replay = await RawPeer.connect(follower.spec.peer);
    const replayed = await attemptHandshake(replay, {
      clusterId,
      from: leaderId,
      to: followerId,
      secret: WRONG_SECRET,
      hello: recorded.hello,
      auth: recorded.auth!,
    });
    replay.write(forgedHeartbeat(leaderId, followerId, FORGED_TERM));
    assert.equal(replayed.accepted, false);
    assert.ok(await replay.waitClosed(), 'closed');
    assert.match(replay.refusals().join(), /authentication failed/);
  });

  test('an oversized frame before authentication is refused at its header', async () => {
    for (const type of [FrameType.Hello, FrameType.Messages, FrameType.SnapBegin]) {
      const peer = await RawPeer.connect(follower.spec.peer);
      peer.write(frameHeader(type, HANDSHAKE_FRAME_BYTES_MAX + 1, FRAME_VERSION));
      assert.ok(await peer.waitClosed(), `frame type ${type}: closed`);
      assert.deepEqual(peer.frames, [], 'nothing answered');
    }
  });

  test('a handshake that never finishes is cut at the handshake timeout', async () => {
    const peer = await RawPeer.connect(follower.spec.peer);
    // Half a HELLO, then silence.
    peer.write(frameHeader(FrameType.Hello, 100, FRAME_VERSION));
    assert.ok(await peer.waitClosed(HANDSHAKE_TIMEOUT_MS + 5_000), 'closed');
    const heldMs = peer.closedAtMs - peer.openedAtMs;
    assert.ok(heldMs >= HANDSHAKE_TIMEOUT_MS - 500, `held ${heldMs} ms`);
  });

  test('too many unauthenticated connections from one address: the rest are closed', async () => {
    const held: RawPeer[] = [];
    try {
      for (let i = 0; i < HANDSHAKES_PER_SOURCE_MAX; i++) {
        held.push(await RawPeer.connect(follower.spec.peer, '127.0.0.2'));
      }
      const extra = await RawPeer.connect(follower.spec.peer, '127.0.0.2');
      assert.ok(await extra.waitClosed(2_000), 'the connection over the cap is closed at once');
      assert.ok(
        held.every((p) => !p.closed),
        'the ones within the cap are still open',
      );
      // Members (another address) still get in meanwhile.
      const member = await RawPeer.connect(follower.spec.peer, '127.0.0.1');
      const attempt = await attemptHandshake(member, {
        clusterId,
        from: leaderId,
        to: followerId,
        secret: clusterSecret(cluster.secret),
      });
      member.destroy();
      assert.equal(attempt.accepted, true);
    } finally {
      for (const p of held) p.destroy();
    }
  });

  test('afterwards: same term, commit index, membership and data; the cluster serves', async () => {
    assertUnchanged(await snapshotStatuses());
    for (const m of cluster.members) assert.equal(await readKey(m, 'guarded'), 'v1');
    await gateway(leader, '/v3/kv/put', { key: b64('guarded'), value: b64('v2') });
    await cluster.waitForCatchUp();
    for (const m of cluster.members) assert.equal(await readKey(m, 'guarded'), 'v2');
  });
});
