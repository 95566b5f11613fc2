/**
 * The entry trace of real members (TANDEM_TRACE_DIR, src/cli/entry-trace.ts), read back the way
 * bench/put-trace.ts reads it: every put a client made is matched to its log entry on the member
 * that served it, and its stages add up to what the client measured.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GrpcKvClient, putOnce } from '../../bench/load.js';
import {
  analyzePuts,
  type ClientPut,
  MemberMarks,
  putStages,
} from '../../bench/put-trace-analysis.js';
import { monotonicUs, parseTrace } from '../../src/cli/entry-trace.js';
import { LocalCluster, memberEnv } from '../../src/cli/local-cluster.js';
import { ELECTION_MS, HEARTBEAT_MS } from './cluster.js';

const PUTS = 20;
const VALUE_BYTES = 300;

/** Members from source that trace into `traceDir` (TANDEM_TRACE_DIR). */
function startTraced(members: number, label: string, traceDir: string): Promise<LocalCluster> {
  return LocalCluster.start({
    members,
    label,
    command: 'source',
    config: { raft: { heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS } },
    env: { ...memberEnv(process.env), TANDEM_TRACE_DIR: traceDir },
    ready: 'published',
  });
}

test('members started with TANDEM_TRACE_DIR trace each put from the call to the apply', async (t) => {
  const traceDir = mkdtempSync(join(tmpdir(), 'tandem-it-trace-'));
  t.after(() => rmSync(traceDir, { recursive: true, force: true }));
  const cluster = await startTraced(3, 'it-entry-trace', traceDir);
  const ids = new Map<string, number>();
  let leaderName = '';
  const puts: ClientPut[] = [];
  try {
    for (const m of cluster.members) {
      const status = await m.status();
      ids.set(m.name, Number.parseInt(status.memberId, 16));
      if (status.isLeader) leaderName = m.name;
    }
    assert.notEqual(leaderName, '', 'a leader');
    const value = Buffer.alloc(VALUE_BYTES, 0x62);
    // Half to the leader, half to a follower: both paths of the analysis.
    for (const m of [
      cluster.members.find((x) => x.name === leaderName)!,
      cluster.members.find((x) => x.name !== leaderName)!,
    ]) {
      const client = new GrpcKvClient([m.spec.client]);
      try {
        await client.ready(10_000);
        for (let i = 0; i < PUTS / 2; i++) {
          const sentUs = monotonicUs();
          await putOnce(client, `trace/${m.name}/${i}`, value, 5000);
          puts.push({ member: ids.get(m.name)!, sentUs, doneUs: monotonicUs() });
        }
      } finally {
        client.close();
      }
    }
  } finally {
    // A graceful stop: each member writes its trace as it stops.
    await cluster.destroy();
  }
  const members = new Map<number, MemberMarks>();
  for (const id of ids.values()) {
    const text = readFileSync(join(traceDir, `${id.toString(16)}.trace`), 'utf8');
    members.set(id, new MemberMarks(parseTrace(text)));
  }
  const r = analyzePuts(puts, members, {
    leader: ids.get(leaderName)!,
    minEntryBytes: VALUE_BYTES,
  });
  assert.equal(r.unmatched, 0, 'every put found its entry, its call and its stages');
  assert.equal(r.matched, PUTS);
  for (const [name, durations] of r.stages) {
    for (const us of durations) assert.ok(us >= 0, `${name}: ${us} µs is not negative`);
  }
  // The stages of each put tile it: in series, with the leader's write beside the follower's
  // path to the first acknowledgement (the longer of the two counts).
  const parallel = [
    'leader appends → follower steps the append',
    'follower steps → takes the Ready',
    'follower write (fdatasync)',
    'follower durable → leader steps the ack',
  ];
  for (const put of puts) {
    const timed = putStages(put, members, {
      leader: ids.get(leaderName)!,
      minEntryBytes: VALUE_BYTES,
    });
    assert.ok(timed !== null);
    const stages = timed.stages;
    let serial = 0;
    for (const [name, us] of stages) {
      if (name !== 'total' && name !== 'leader write (fdatasync)' && !parallel.includes(name)) {
        serial += us;
      }
    }
    const followerPath = parallel.reduce((sum, name) => sum + stages.get(name)!, 0);
    const writes = Math.max(stages.get('leader write (fdatasync)')!, followerPath);
    assert.equal(serial + writes, stages.get('total'), `put at ${put.sentUs}: stages tile it`);
  }
});

test('a trace that cannot be written is a warning: the member still stops cleanly', async (t) => {
  const missing = join(tmpdir(), `tandem-it-trace-missing-${process.pid}`, 'nowhere');
  const cluster = await startTraced(1, 'it-entry-trace-missing', missing);
  t.after(() => cluster.destroy({ kill: true }));
  const m = cluster.members[0]!;
  const exit = await m.stop(10_000);
  assert.deepEqual(exit, { code: 0, signal: null }, 'a clean exit');
  const log = m.log();
  assert.match(log, /entry trace not written/);
  assert.match(log, /tandem member stopped/);
});
