/**
 * Idempotent writes on a real 3-member cluster (real processes, TCP, the TypeScript client):
 *
 * - the leader is SIGKILLed under a load of keyed puts: writes out on it are retried with their
 *   key on the new leader, and none is applied twice (each key written once has version 1, and
 *   the revision each put answered is the key's revision);
 * - a keyed put sent again after the member that applied it was killed (its answer taken as
 *   lost) is answered with the first revision by the next leader, and applies once; every live
 *   member counts it in tandem_request_id_duplicates_total.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type LocalCluster, MEMBER_START_TIMEOUT_MS } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { Client } from '../../src/client/index.js';
import { startCluster } from './cluster.js';
import { scrapeAdmin, valueOr0 } from './scrape.js';

const TEST_TIMEOUT_MS = 120_000;
const WRITERS = 16;
const PUTS_PER_WRITER_MAX = 400;

describe('idempotent writes across a killed leader', { timeout: 600_000 }, () => {
  let c: LocalCluster;
  let client: Client;

  before(async () => {
    c = await startCluster({ label: 'idem', readyTimeoutMs: 150_000 });
    client = await Client.connect({
      endpoints: c.members.map((m) => m.spec.client),
      idempotencyKey: true,
      requestTimeoutMs: 15_000,
    });
  });

  after(async () => {
    client?.close();
    await c?.destroy({ kill: true });
  });

  test('keyed puts under a leader kill: retried, none applied twice', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const answered = new Map<string, number>();
    const failed: string[] = [];
    let stop = false;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; i < PUTS_PER_WRITER_MAX && !stop; i++) {
        const key = `idem/${w}/${i}`;
        try {
          answered.set(key, (await client.put(key, 'v')).revision);
        } catch {
          failed.push(key);
        }
      }
    };
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
    await waitFor('writes flowing', 20_000, () => (answered.size >= 200 ? true : null));
    const leader = await c.leader();
    await leader.kill();
    const afterKill = answered.size;
    await waitFor('writes flowing again', 30_000, () =>
      answered.size >= afterKill + 200 ? true : null,
    );
    stop = true;
    await Promise.all(writers);
    // Unkeyed, the puts out on the killed leader would fail (they may have applied): keyed, they
    // are retried on the next leader within their deadline.
    assert.deepEqual(failed, [], 'every keyed put succeeded');

    for (const [key, revision] of answered) {
      const kv = await client.get(key, { consistency: 'linearizable' });
      assert.ok(kv !== null, `${key} is there`);
      assert.equal(kv.version, 1, `${key} applied once`);
      assert.equal(kv.modRevision, revision, `${key}: the revision its put answered`);
    }
    // A put that failed at its deadline may or may not have applied, but never twice.
    for (const key of failed) {
      const kv = await client.get(key);
      assert.ok(kv === null || kv.version === 1, `${key} at most once`);
    }
    leader.spawn();
    await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
  });

  test('a keyed put resent after its leader died is answered with the first revision', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const key = 'idem/resent';
    const first = await client.put(key, 'v', { idempotencyKey: 'resend-1' });
    await client.put('idem/other', 'v'); // the store moves on
    const leader = await c.leader();
    await leader.kill();
    // The same write, sent again as a client that never saw the answer would.
    let again: number | null = null;
    for (let attempt = 0; attempt < 50 && again === null; attempt++) {
      try {
        again = (await client.put(key, 'v', { idempotencyKey: 'resend-1' })).revision;
      } catch {
        await sleep(200);
      }
    }
    assert.equal(again, first.revision, 'the first revision');
    const kv = await client.get(key);
    assert.equal(kv?.version, 1, 'applied once');
    // Every live member applied the resent entry as a duplicate, and its metrics say so.
    for (const m of c.members.filter((x) => x !== leader)) {
      await waitFor(`${m.name} counts the duplicate`, 10_000, async () => {
        const f = await scrapeAdmin(m.spec.admin);
        return valueOr0(f, 'tandem_request_id_duplicates_total') >= 1 &&
          valueOr0(f, 'tandem_request_ids') >= 1
          ? true
          : null;
      });
    }
    // The same key for a different write is refused, not answered with the first result.
    await assert.rejects(
      client.put(key, 'other value', { idempotencyKey: 'resend-1' }),
      (e: unknown) => (e as { code?: string }).code === 'REQUEST_ID_REUSED',
    );
    leader.spawn();
    await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
  });
});
