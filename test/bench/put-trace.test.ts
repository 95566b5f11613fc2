import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  analyzePuts,
  type ClientPut,
  MemberMarks,
  quantile,
} from '../../bench/put-trace-analysis.js';
import {
  EntryTrace,
  parseTrace,
  TRACE_MARKS_MAX,
  type TraceMark,
} from '../../src/cli/entry-trace.js';
import { type Entry, EntryType, MessageType, type Ready } from '../../src/raft/types.js';
import { encodeEnvelope } from '../../src/server/envelope.js';
import { MemberEvents } from '../../src/server/events.js';
import { msg } from '../raft/harness.js';

function entry(index: number, data: Entry['data'] = new Uint8Array()): Entry {
  return { index, term: 2, type: EntryType.Normal, data };
}

function ready(entries: Entry[], committed: Entry[]): Ready {
  return {
    softState: null,
    hardState: null,
    readStates: [],
    entries,
    snapshot: null,
    committedEntries: committed,
    messagesNow: [],
    messages: [],
    mustSync: entries.length > 0,
  };
}

test('an entry trace records each stage a member reports and reads back what it wrote', () => {
  const events = new MemberEvents();
  const trace = new EntryTrace(7);
  trace.attach(events);
  events.onReadyTaken(ready([entry(5), entry(6)], [entry(4)]));
  events.onReadySaved(ready([entry(5), entry(6)], []));
  events.onStepped(
    msg({ type: MessageType.App, to: 1, term: 2, entries: [entry(8)], commit: 6, from: 3 }),
    2,
    3,
  );
  events.onStepped(msg({ type: MessageType.Heartbeat, to: 1, term: 2, commit: 7, from: 3 }), 2, 3);
  events.onStepped(msg({ type: MessageType.AppResp, to: 1, term: 2, index: 6, from: 9 }), 2, 7);
  events.onStepped(
    msg({ type: MessageType.AppResp, to: 1, term: 2, index: 6, reject: true, from: 9 }),
    2,
    7,
  );
  events.onStepped(
    msg({ type: MessageType.Prop, to: 1, term: 2, entries: [entry(0)], from: 9 }),
    2,
    7,
  );
  events.onApplied(entry(5, encodeEnvelope(7, 41, new Uint8Array(300))), 'ok');
  events.onApplied(entry(6, encodeEnvelope(8, 3, new Uint8Array(10))), 'ok');
  events.onApplied(entry(7), undefined);
  trace.noteCall('/etcdserverpb.KV/Put', 0, 0.002);
  trace.noteCall('/etcdserverpb.KV/Range', 0, 0.001); // not a put: not marked
  const marks = parseTrace(trace.text());
  assert.deepEqual(
    marks.map((m) => [m.stage, m.a, m.b, m.c]),
    [
      ['append', 5, 6, 0],
      ['commit', 4, 4, 0],
      ['durable', 5, 6, 0],
      ['recv-app', 8, 8, 3],
      ['recv-commit', 6, 0, 3],
      ['recv-commit', 7, 0, 3],
      ['recv-ack', 6, 0, 9],
      ['recv-prop', 1, 0, 9],
      ['applied', 5, 41, 317],
      ['applied', 6, 0, 27],
      ['applied', 7, 0, 0],
      ['rpc', marks.at(-1)!.a, 0, 0],
    ],
  );
  const rpc = marks.at(-1)!;
  assert.ok(Math.abs(rpc.us - rpc.a - 2000) <= 50, 'the call started 2 ms before it answered');
  for (let i = 1; i < marks.length; i++) assert.ok(marks[i]!.us >= marks[i - 1]!.us, 'monotonic');
});

test('an entry trace keeps at most its bound and counts what it dropped', () => {
  const trace = new EntryTrace(1);
  for (let i = 0; i < TRACE_MARKS_MAX + 10; i++) trace.mark('append', i, i, 0);
  assert.equal(trace.dropped, 10);
  assert.equal(parseTrace(trace.text()).length, TRACE_MARKS_MAX);
});

test('a malformed trace line is refused with its line number', () => {
  assert.throws(
    () => parseTrace('append\t1\t1\t0\t10\nbogus\t1\t1\t0\t11\n'),
    /line 2 is malformed/,
  );
  assert.throws(() => parseTrace('append\t1\tx\t0\t10\n'), /line 1 is malformed/);
});

/** A leader (1) and two followers (2, 3), entry 10 put at t=0 by a client of `serving`. */
function cluster(serving: number): { puts: ClientPut[]; members: Map<number, MemberMarks> } {
  const m = (
    stage: TraceMark['stage'],
    a: number,
    b: number,
    c: number,
    us: number,
  ): TraceMark => ({
    stage,
    a,
    b,
    c,
    us,
  });
  const leader: TraceMark[] = [
    m('append', 10, 10, 0, 300),
    m('recv-ack', 10, 0, 2, 700),
    m('durable', 10, 10, 0, 900),
    m('recv-ack', 10, 0, 3, 1000),
    m('commit', 10, 10, 0, 950),
  ];
  const f2: TraceMark[] = [
    m('recv-app', 10, 10, 1, 350),
    m('append', 10, 10, 0, 360),
    m('durable', 10, 10, 0, 650),
    m('recv-commit', 10, 0, 1, 1000),
    m('commit', 10, 10, 0, 1010),
    m('applied', 10, 0, 300, 1100),
  ];
  const f3: TraceMark[] = [
    m('recv-app', 10, 10, 1, 400),
    m('append', 10, 10, 0, 420),
    m('durable', 10, 10, 0, 950),
  ];
  if (serving === 1) {
    leader.push(m('applied', 10, 5, 300, 1050), m('rpc', 100, 0, 0, 1120));
  } else {
    leader.push(m('recv-prop', 1, 0, 2, 250), m('applied', 10, 0, 300, 1050));
    f2[5] = m('applied', 10, 5, 300, 1100);
    f2.push(m('rpc', 100, 0, 0, 1180));
  }
  return {
    puts: [{ member: serving, sentUs: 0, doneUs: 1500 }],
    members: new Map([
      [1, new MemberMarks(leader)],
      [2, new MemberMarks(f2)],
      [3, new MemberMarks(f3)],
    ]),
  };
}

test('a put served by the leader is timed stage by stage through the first follower to ack', () => {
  const { puts, members } = cluster(1);
  const r = analyzePuts(puts, members, { leader: 1, minEntryBytes: 256 });
  assert.equal(r.matched, 1);
  assert.deepEqual(Object.fromEntries([...r.stages].map(([name, us]) => [name, us[0]])), {
    'client sends → the call starts': 100,
    'the call starts → leader appends': 200,
    'leader appends → follower steps the append': 50,
    'follower steps → takes the Ready': 10,
    'follower write (fdatasync)': 290,
    'follower durable → leader steps the ack': 50,
    'leader write (fdatasync)': 600,
    'quorum durable → leader takes the commit Ready': 50,
    'leader commit Ready → applied': 100,
    'applied → the call answers': 70,
    'the call answers → client has the reply': 380,
    total: 1500,
  });
  assert.equal(r.leaderWriteLast, 1, 'the leader was durable after the first ack');
});

test('a put served by a follower is timed through the forward and the commit it hears', () => {
  const { puts, members } = cluster(2);
  const r = analyzePuts(puts, members, { leader: 1, minEntryBytes: 256 });
  assert.equal(r.matched, 1);
  const stages = Object.fromEntries([...r.stages].map(([name, us]) => [name, us[0]]));
  assert.equal(stages['the call starts → leader steps the proposal'], 150);
  assert.equal(stages['leader steps the proposal → appends'], 50);
  assert.equal(stages['leader commit Ready → follower steps the commit'], 50);
  assert.equal(stages['follower steps the commit → takes the Ready'], 10);
  assert.equal(stages['follower commit Ready → applied'], 90);
  assert.equal(stages['applied → the call answers'], 80);
  assert.equal(stages['the call answers → client has the reply'], 320);
});

test('a put whose entry or call is not in the traces is counted as unmatched, not guessed', () => {
  const { members } = cluster(1);
  const outside = [{ member: 1, sentUs: 2000, doneUs: 3000 }];
  assert.deepEqual(
    [analyzePuts(outside, members, { leader: 1, minEntryBytes: 256 }).unmatched],
    [1],
  );
  // Entries smaller than a put (internal proposals) never match.
  const small = analyzePuts(cluster(1).puts, members, { leader: 1, minEntryBytes: 400 });
  assert.equal(small.matched, 0);
});

test('quantile is nearest-rank', () => {
  assert.equal(quantile([5, 1, 4, 2, 3], 0.5), 3);
  assert.equal(quantile([5, 1, 4, 2, 3], 0.9), 5);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});
