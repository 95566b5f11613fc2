/**
 * The dashboard's admin routes over real HTTP, with the KV reads of a real assembled member (on
 * virtual time): keys under a prefix, a key's revisions, bad input, files only from the built
 * directory, the event stream.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type AdminServer, startAdminServer } from '../../src/api/admin.js';
import { dashboard } from '../../src/api/dashboard.js';
import { LiveStats } from '../../src/api/live-stats.js';
import { putRequest } from '../../src/kv/api-types.js';
import type { NodeId } from '../../src/raft/types.js';
import type { RequestOptions } from '../../src/server/contract.js';
import { LoopbackHub, ManualClock, startPolicyCluster } from '../server/harness.js';

const LINEARIZABLE: RequestOptions = { consistency: { kind: 'linearizable' }, ack: 'quorum' };
const enc = (s: string) => new TextEncoder().encode(s);

async function settle<T>(clock: ManualClock, p: Promise<T>): Promise<T> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  for (let i = 0; i < 500 && !done; i++) {
    await Promise.resolve();
    clock.advance(5);
  }
  return p;
}

/** GET `path`: status and body text (a stream: its first chunk, then the request ends). */
function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path }, (res) => {
      const stream = res.headers['content-type'] === 'text/event-stream';
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
        if (stream) {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(5_000, () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

describe('dashboard routes', () => {
  let admin: AdminServer;
  let dir: string;

  before(async () => {
    const clock = new ManualClock();
    const hub = new LoopbackHub(clock);
    const founders = ([1, 2, 3] as NodeId[]).map((id) => ({
      id,
      name: `n${id}`,
      peerUrls: [`http://127.0.0.1:${id}`],
      clientUrls: [],
    }));
    const nodes = startPolicyCluster(clock, hub, founders, 3, () => ({}));
    clock.advance(2_000);
    const leader = [...nodes.values()].find((n) => n.member.isLeader)!;
    for (const [k, v] of [
      ['app/a', 'one'],
      ['app/a', 'two'],
      ['app/b', 'x'],
      ['apq', 'outside the prefix'],
      ['other', 'y'],
    ] as const) {
      await settle(
        clock,
        leader.facade.put(putRequest({ key: enc(k), value: enc(v) }), LINEARIZABLE),
      );
    }
    dir = mkdtempSync(join(tmpdir(), 'tandem-dash-routes-'));
    const built = join(dir, 'dashboard');
    mkdirSync(join(built, 'assets'), { recursive: true });
    writeFileSync(join(built, 'index.html'), '<!doctype html><title>t</title>');
    writeFileSync(join(built, 'assets', 'index-1.js'), 'export {}');
    writeFileSync(join(dir, 'secret.txt'), 'not served');
    admin = await startAdminServer({
      listen: { host: '127.0.0.1', port: 0 },
      status: () => ({ name: 'n1' }),
      ready: () => ({ ready: true, reason: '' }),
      metrics: { contentType: 'text/plain', scrape: async () => '' },
      memberOp: async () => 'ok',
      dashboard: dashboard({
        staticDir: built,
        status: () => ({ name: 'n1', isLeader: true }),
        stats: () => new LiveStats({ nowMs: () => 0 }).sample(),
        events: {
          epochMs: 42,
          since: (after) =>
            [1, 2, 3]
              .filter((seq) => seq > after)
              .map((seq) => ({ seq, atMs: seq, kind: 'policy' as const, text: `e${seq}` })),
        },
        range: (req, opts) => leader.facade.range(req, opts),
        devControls: null,
      }),
    });
  });

  after(async () => {
    await admin?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  test('keys under a prefix (and only those), with their values', async () => {
    const r = await get(admin.port, '/dashboard/api/kv?prefix=app%2F');
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body) as { kvs: { key: string; value: string; version: number }[] };
    assert.deepEqual(
      body.kvs.map((kv) => [kv.key, kv.value, kv.version]),
      [
        ['app/a', 'two', 2],
        ['app/b', 'x', 1],
      ],
    );
    const all = JSON.parse((await get(admin.port, '/dashboard/api/kv?prefix=')).body) as {
      kvs: unknown[];
    };
    assert.equal(all.kvs.length, 4);
    const limited = JSON.parse((await get(admin.port, '/dashboard/api/kv?limit=1')).body) as {
      kvs: unknown[];
      more: boolean;
    };
    assert.deepEqual([limited.kvs.length, limited.more], [1, true]);
  });

  test("a key's revisions, newest first", async () => {
    const r = await get(admin.port, '/dashboard/api/history?key=app%2Fa');
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body) as { versions: { value: string; version: number }[] };
    assert.deepEqual(
      body.versions.map((v) => [v.value, v.version]),
      [
        ['two', 2],
        ['one', 1],
      ],
    );
    const none = JSON.parse((await get(admin.port, '/dashboard/api/history?key=nope')).body);
    assert.deepEqual(none.versions, []);
  });

  test('bad input: a clear 400, never a crash', async () => {
    for (const path of [
      '/dashboard/api/kv?limit=0',
      '/dashboard/api/kv?limit=abc',
      `/dashboard/api/kv?limit=${10 ** 6}`,
      '/dashboard/api/history',
      `/dashboard/api/history?key=${'k'.repeat(5000)}`,
    ]) {
      const r = await get(admin.port, path);
      assert.equal(r.status, 400, `${path}: ${r.body}`);
      assert.match(JSON.parse(r.body).error, /limit|key/);
    }
  });

  test('files only from the built directory', async () => {
    const index = await get(admin.port, '/dashboard/');
    assert.equal(index.status, 200);
    assert.match(index.body, /<title>t<\/title>/);
    assert.equal((await get(admin.port, '/dashboard/assets/index-1.js')).status, 200);
    for (const path of [
      '/dashboard/../secret.txt',
      '/dashboard/%2e%2e/secret.txt',
      '/dashboard/assets/../../secret.txt',
      '/dashboard/nope.js',
    ]) {
      const r = await get(admin.port, path);
      assert.equal(r.status, 404, path);
      assert.doesNotMatch(r.body, /not served/);
    }
  });

  test('the state and its stream carry the events after a sequence number', async () => {
    const state = JSON.parse((await get(admin.port, '/dashboard/api/state?after=1')).body);
    assert.deepEqual(
      state.events.items.map((e: { seq: number }) => e.seq),
      [2, 3],
    );
    assert.equal(state.events.epochMs, 42);
    const stream = await get(admin.port, '/dashboard/api/stream?after=2');
    const data = JSON.parse(/^data: (.*)$/m.exec(stream.body)![1]!);
    assert.deepEqual(
      data.events.items.map((e: { seq: number }) => e.seq),
      [3],
    );
    assert.match(stream.body, /^id: 3$/m);
  });
});
