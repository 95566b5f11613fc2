/**
 * The dispatcher's safety rule with scripted members (no network): a write is sent to another
 * member only when the first certainly never received it; a read after any member failure;
 * an answer (an etcd error) is never retried; a slow read is hedged to another member; an
 * ejected member is probed back in.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import { Dispatcher, PROBE_TICK_MS, startProbes } from '../../src/proxy/dispatch.js';
import type { PendingCall, UpstreamError, Upstreams } from '../../src/proxy/upstream.js';
import { GrpcMetadata } from '../../src/proxy/upstream.js';
import { Router } from '../../src/routing/router.js';

type Script = (url: string, n: number) => { ms: number; error?: UpstreamError; response?: unknown };

function fakeUpstreams(script: Script) {
  const calls: string[] = [];
  const upstreams = {
    unary(url: string): PendingCall {
      calls.push(url);
      const step = script(url, calls.length);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = new Promise<unknown>((resolve, reject) => {
        timer = setTimeout(
          () => (step.error ? reject(step.error) : resolve(step.response ?? { ok: url })),
          step.ms,
        );
      });
      return { done, cancel: () => clearTimeout(timer) };
    },
  } as unknown as Upstreams;
  return { upstreams, calls };
}

function router(): Router {
  const r = new Router({ hedgeDelayDefaultMs: 20 });
  r.applyTopology({
    members: ['1', '2', '3'].map((id) => ({
      id,
      name: `n${id}`,
      clientUrl: `u${id}`,
      role: 'voter' as const,
      zone: '',
    })),
    leaderId: '1',
    term: 1,
  });
  return r;
}

const put = (idempotent: boolean) => ({
  service: 'kv' as const,
  method: 'Put',
  request: {},
  metadata: new GrpcMetadata(),
  route: 'leader' as const,
  idempotent,
});
const lost: UpstreamError = {
  code: status.UNAVAILABLE,
  details: 'Connection dropped',
  kind: 'lost',
};
const unsent: UpstreamError = {
  code: status.UNAVAILABLE,
  details: 'No connection established',
  kind: 'unsent',
};
const answer: UpstreamError = {
  code: status.INVALID_ARGUMENT,
  details: 'etcdserver: key is not provided',
  kind: 'answer',
};

test('a write lost with its member is not sent again', async () => {
  const { upstreams, calls } = fakeUpstreams(() => ({ ms: 1, error: lost }));
  await assert.rejects(
    new Dispatcher(router(), upstreams, null).call(put(false)),
    (e) => e === lost,
  );
  assert.deepEqual(calls, ['u1']);
});

test('a write never sent goes to another member', async () => {
  const { upstreams, calls } = fakeUpstreams((url) =>
    url === 'u1' ? { ms: 1, error: unsent } : { ms: 1 },
  );
  const r = await new Dispatcher(router(), upstreams, null).call(put(false));
  assert.equal(calls[0], 'u1');
  assert.equal(calls.length, 2);
  assert.deepEqual(r, { ok: calls[1] });
});

test('an idempotent leader call lost is sent again; an answer never is', async () => {
  const a = fakeUpstreams((url) => (url === 'u1' ? { ms: 1, error: lost } : { ms: 1 }));
  await new Dispatcher(router(), a.upstreams, null).call(put(true));
  assert.equal(a.calls.length, 2);
  const b = fakeUpstreams(() => ({ ms: 1, error: answer }));
  await assert.rejects(
    new Dispatcher(router(), b.upstreams, null).call(put(true)),
    (e) => e === answer,
  );
  assert.equal(b.calls.length, 1);
});

test('a slow read is hedged to another member, which answers first', async () => {
  const r = router();
  const { upstreams, calls } = fakeUpstreams((_url, n) => ({ ms: n === 1 ? 2_000 : 5 }));
  const t0 = performance.now();
  const response = await new Dispatcher(r, upstreams, null).call({
    ...put(true),
    method: 'Range',
    route: 'read',
  });
  assert.ok(performance.now() - t0 < 1_000, 'answered by the hedge, not the slow member');
  assert.equal(calls.length, 2);
  assert.deepEqual(response, { ok: calls[1] });
  assert.deepEqual(r.report(performance.now()).hedges, { sent: 1, won: 1, refused: 0 });
});

test('probes: an ejected member is readmitted once it answers, and stays out while it fails', async () => {
  const r = router();
  let now = 0;
  const clock = () => now;
  // Member 3 fails twice in a row: ejected for ejectBaseMs (1 s).
  for (let i = 0; i < 2; i++) r.end(r.begin('3', now), 'failed', now);
  assert.equal(r.health('3'), 'ejected');
  let down = true;
  const { upstreams, calls } = fakeUpstreams((url) =>
    url === 'u3' && down ? { ms: 1, error: lost } : { ms: 1, response: {} },
  );
  const stop = startProbes(r, upstreams, clock);
  try {
    await sleep(3 * PROBE_TICK_MS);
    assert.deepEqual(calls, [], 'no probe before the ejection ends');
    now = 1_000;
    await waitUntil(() => calls.length === 1);
    assert.equal(r.health('3'), 'ejected', 'a failed probe ejects it again');
    down = false;
    now = 3_000; // the second ejection lasts twice as long
    await waitUntil(() => r.health('3') === 'ok');
    assert.deepEqual(calls, ['u3', 'u3'], 'only the ejected member is probed');
  } finally {
    stop();
  }
});

async function waitUntil(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) await sleep(PROBE_TICK_MS / 2);
  assert.ok(done(), 'not within 100 rounds');
}
