/**
 * The client's write retries against a scripted member on loopback: a put with an idempotency
 * key that is lost (the member failed with it out) is sent again with the same key; without a
 * key it is not (it may have applied); keys are fresh per write, or the caller's own.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { Client, mayRetry, newIdempotencyKey, TandemClientError } from '../../src/client/index.js';
import { startFakeMember } from './fake-member.js';

/** The member applies each key's first attempt, then "dies" before answering it. */
const LOST = { code: status.UNAVAILABLE, details: 'fake: the member failed after applying' };

test('the retry rule: unsent always; lost or UNAVAILABLE only when idempotent; answers never', () => {
  assert.equal(mayRetry('unsent', status.UNAVAILABLE, false), true);
  assert.equal(mayRetry('lost', status.UNAVAILABLE, false), false);
  assert.equal(mayRetry('lost', status.DEADLINE_EXCEEDED, true), true);
  assert.equal(mayRetry('answer', status.UNAVAILABLE, false), false);
  assert.equal(mayRetry('answer', status.UNAVAILABLE, true), true, 'no leader, leader changed');
  assert.equal(mayRetry('answer', status.INVALID_ARGUMENT, true), false);
  assert.equal(mayRetry('answer', status.FAILED_PRECONDITION, true), false);
});

test('idempotency keys are 128 random bits, fresh each time', () => {
  const keys = new Set(Array.from({ length: 1000 }, () => newIdempotencyKey()));
  assert.equal(keys.size, 1000);
  for (const k of keys) assert.match(k, /^[A-Za-z0-9_-]{22}$/);
});

test('a lost put with an idempotency key is retried with the same key; without one it is not', async () => {
  const firstRevisionByKey = new Map<string, number>();
  let revision = 10;
  const member = await startFakeMember((call) => {
    const id = call.metadata['tandem-request-id'];
    if (id === undefined) {
      revision++;
      return LOST; // applied, answer lost
    }
    const seen = firstRevisionByKey.get(id);
    if (seen !== undefined) return { revision: seen }; // the cluster's dedupe answer
    firstRevisionByKey.set(id, ++revision);
    return LOST;
  });
  const client = await Client.connect({
    endpoints: [member.url],
    idempotencyKey: true,
    requestTimeoutMs: 5_000,
  });
  try {
    const r = await client.put('a', '1');
    assert.equal(r.revision, 11, 'the first application’s revision');
    assert.equal(member.puts.length, 2, 'sent twice');
    const ids = member.puts.map((p) => p.metadata['tandem-request-id']);
    assert.ok(ids[0] !== undefined && ids[0] === ids[1], `the same key on both attempts: ${ids}`);

    // A second write gets a new key.
    await client.put('b', '1');
    assert.notEqual(member.puts[2]!.metadata['tandem-request-id'], ids[0]);

    // The caller's own key, as given.
    await client.put('c', '1', { idempotencyKey: 'order-42' });
    assert.equal(member.puts.at(-1)!.metadata['tandem-request-id'], 'order-42');

    // Without a key: one attempt, and the error says the write may have applied.
    const before = member.puts.length;
    await assert.rejects(
      client.put('d', '1', { idempotencyKey: false }),
      (e: unknown) => e instanceof TandemClientError && e.code === 'UNAVAILABLE',
    );
    assert.equal(member.puts.length, before + 1, 'not sent again');
    assert.equal(member.puts.at(-1)!.metadata['tandem-request-id'], undefined);

    await assert.rejects(
      client.put('e', '1', { idempotencyKey: 'has space' }),
      (e: unknown) => e instanceof TandemClientError && e.code === 'INVALID_ARGUMENT',
    );
  } finally {
    client.close();
    await member.close();
  }
});

test('a keyed put that keeps failing gives up at the overall deadline', async () => {
  const member = await startFakeMember(() => LOST);
  const client = await Client.connect({
    endpoints: [member.url],
    idempotencyKey: true,
    requestTimeoutMs: 600,
  });
  try {
    const t0 = performance.now();
    await assert.rejects(client.put('a', '1'), TandemClientError);
    const ms = performance.now() - t0;
    assert.ok(ms < 5_000, `bounded by the deadline (${Math.round(ms)} ms)`);
    assert.ok(member.puts.length >= 2, 'retried meanwhile');
    const ids = new Set(member.puts.map((p) => p.metadata['tandem-request-id']));
    assert.equal(ids.size, 1, 'every attempt with the same key');
  } finally {
    client.close();
    await member.close();
  }
});
