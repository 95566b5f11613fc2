/**
 * `tandem dev`'s controls (src/cli/dev-controls.ts) on a real 3-member cluster: pause and resume
 * a member's process, partition and heal it through the members' /faults, a bounded load, an
 * operator's move-leader sent to the leader, refusals of bad requests, and the timeline.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type DevControls, startDevControls } from '../../src/cli/dev-controls.js';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { adminRequest, sleep } from '../../src/cli/local-net.js';

interface State {
  members: { name: string; process: string; partitioned: boolean; dashboard: unknown }[];
  load: { running: boolean; ops: number; errors: number } | null;
  timeline: { source: string; kind: string; text: string }[];
}

async function call(
  url: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('dev controls', { timeout: 180_000 }, () => {
  let cluster: LocalCluster;
  let controls: DevControls;
  const state = async () => (await call(controls.url, '/dev/state')).json as unknown as State;

  before(async () => {
    cluster = await LocalCluster.start({
      members: 3,
      label: 'dev-controls',
      config: { testMode: { faultInjection: true } },
    });
    controls = await startDevControls(cluster, { host: '127.0.0.1', port: 0 });
  });

  after(async () => {
    await controls?.close();
    await cluster?.destroy({ kill: true });
  });

  test('pause and resume a member', async () => {
    const n2 = cluster.member('n2');
    const paused = await call(controls.url, '/dev/members/n2/pause', {});
    assert.equal(paused.status, 200, JSON.stringify(paused.json));
    assert.equal(n2.state, 'paused');
    assert.equal((await state()).members.find((m) => m.name === 'n2')?.process, 'paused');
    assert.equal((await call(controls.url, '/dev/members/n2/pause', {})).status, 409);
    assert.equal((await call(controls.url, '/dev/members/n2/resume', {})).status, 200);
    assert.equal(n2.state, 'running');
  });

  test('partition and heal: rules on both sides of every link of the member', async () => {
    assert.equal((await call(controls.url, '/dev/members/n3/partition', {})).status, 200);
    type Faults = { links: { peer: string; dropRate: number }[] };
    const own = await adminRequest<Faults>(cluster.member('n3').spec.admin, 'GET', '/faults');
    assert.deepEqual(
      own.links.map((l) => l.dropRate),
      [1, 1],
    );
    const other = await adminRequest<Faults>(cluster.member('n1').spec.admin, 'GET', '/faults');
    assert.deepEqual(
      other.links.map((l) => l.dropRate),
      [1],
    );
    assert.equal((await state()).members.find((m) => m.name === 'n3')?.partitioned, true);
    assert.equal((await call(controls.url, '/dev/members/n3/heal', {})).status, 200);
    const healed = await adminRequest<Faults>(cluster.member('n3').spec.admin, 'GET', '/faults');
    assert.ok(healed.links.every((l) => l.dropRate === 0));
    assert.equal((await state()).members.find((m) => m.name === 'n3')?.partitioned, false);
    await cluster.waitForLeader();
  });

  test('a bounded load runs, ends, and is refused while one runs', async () => {
    assert.equal((await call(controls.url, '/dev/load', { seconds: 2 })).status, 200);
    assert.equal((await call(controls.url, '/dev/load', { seconds: 2 })).status, 409);
    const deadline = Date.now() + 30_000;
    let s = await state();
    while (s.load?.running !== false && Date.now() < deadline) {
      await sleep(200);
      s = await state();
    }
    assert.equal(s.load?.running, false, 'the load ended');
    assert.ok((s.load?.ops ?? 0) > 0, `the load did something: ${JSON.stringify(s.load)}`);
  });

  test("move-leader goes to the leader; the cluster's leader changes", async () => {
    const leader = await cluster.waitForLeader();
    const target = cluster.followers(leader)[0]!;
    const r = await call(controls.url, '/dev/op', { op: 'move-leader', name: target.name });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal((await cluster.waitForLeader()).name, target.name);
  });

  test('bad requests: clear refusals', async () => {
    const cases: [string, unknown, number][] = [
      ['/dev/members/n9/kill', {}, 404],
      ['/dev/members/n1/explode', {}, 404],
      ['/dev/load', { seconds: 0 }, 400],
      ['/dev/load', { seconds: 10_000 }, 400],
      ['/dev/load', 'not json', 400],
      ['/dev/op', { op: 'destroy', name: 'n1' }, 400],
      ['/dev/op', { op: 'promote', name: 'nobody' }, 400],
      ['/dev/nothing', {}, 404],
    ];
    for (const [path, body, status] of cases) {
      const r = await call(controls.url, path, body);
      assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
      assert.equal(typeof r.json.error, 'string');
    }
    const foreign = await fetch(`${controls.url}/dev/state`, {
      headers: { origin: 'http://127.0.0.1:1' },
    });
    assert.equal(foreign.status, 403);
  });

  test("the timeline has the launcher's actions and the members' events", async () => {
    const deadline = Date.now() + 10_000;
    let timeline = (await state()).timeline;
    while (!timeline.some((e) => e.source !== 'launcher') && Date.now() < deadline) {
      await sleep(200);
      timeline = (await state()).timeline;
    }
    const texts = timeline.map((e) => `${e.source} ${e.kind} ${e.text}`);
    assert.ok(texts.includes('launcher fault n2: paused (SIGSTOP)'), texts.join('\n'));
    assert.ok(
      texts.some((t) => t.startsWith('launcher operator move-leader')),
      texts.join('\n'),
    );
    assert.ok(
      timeline.some((e) => e.source !== 'launcher' && e.kind === 'leader'),
      texts.join('\n'),
    );
  });
});
