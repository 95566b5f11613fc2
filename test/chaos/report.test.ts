import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { analyze } from '../../src/chaos/analyze.js';
import type { Value } from '../../src/chaos/history.js';
import {
  buildReport,
  renderTimelineHtml,
  runVerdict,
  verdictLine,
  writeReportFiles,
} from '../../src/chaos/report.js';
import { build, r, w } from './gen.js';

const healthy = () =>
  build([
    w(0, 'x', 1, 0, 10),
    w(1, 'x', 2, 1000, 0, 'info'),
    r(2, 'x', 1, 20, 30),
    w(3, 'y', 'v', 0, 2000),
  ]);

test('a passing run: verdict line and a JSON-safe result object', () => {
  const ops = healthy();
  const checks = analyze({
    ops,
    finalValues: new Map<string, Value>([
      ['x', 1],
      ['y', 'v'],
    ]),
  });
  assert.equal(runVerdict(checks), 'pass');
  const line = verdictLine(checks, ops.length);
  assert.match(
    line,
    /^PASS 4 ops: linearizable \(2 keys, \d+ steps\); no lost writes \(2 acknowledged\); 75\.0% ok, longest write gap 1\.99 s$/,
  );
  const report = buildReport(checks, ops.length);
  assert.deepEqual(
    JSON.parse(JSON.stringify(report)),
    report,
    'plain JSON: no Infinity, no undefined',
  );
  assert.equal(report.verdict, 'pass');
});

test('a failing run names the key and keeps completion times JSON-safe', () => {
  const ops = build([
    w(0, 'x', 1, 0, 10),
    w(1, 'x', 2, 20, 30),
    w(2, 'x', 3, 25, 0, 'info'),
    r(3, 'x', 1, 40, 50),
    r(4, 'x', 3, 60, 70),
  ]);
  const checks = analyze({ ops, finalValues: new Map([['x', 1]]) });
  assert.equal(runVerdict(checks), 'fail');
  assert.match(
    verdictLine(checks, ops.length),
    /^FAIL 5 ops: NOT linearizable on key "x"; LOST writes on 1 key\(s\)/,
  );
  const report = buildReport(checks, ops.length);
  assert.deepEqual(JSON.parse(JSON.stringify(report)), report);
  const v = report.checks.linearizability!.violations[0]!;
  assert.equal(v.blocking.process, 3);
  const unknown = [...v.prefixTail, ...v.candidates].filter((op) => op.status === 'info');
  assert.deepEqual(
    unknown.map((op) => [op.process, op.completeMs]),
    [[2, null]],
    'the unknown write is involved, its completion time null',
  );
});

test('an undecided run is unknown, not pass', () => {
  const ops = build([w(0, 'x', 1, 0, 10), w(1, 'x', 2, 0, 10), r(2, 'x', 1, 20, 30)]);
  const checks = analyze({ ops, linearizability: { stepsPerKeyMax: 2 } });
  assert.equal(runVerdict(checks), 'unknown');
  assert.match(verdictLine(checks, ops.length), /^UNKNOWN .*linearizability unknown on "x"/);
});

test('the HTML timeline: lanes, fault shading, highlighted violation, escaped text', () => {
  const ops = build([
    w(0, '<script>x', 1, 0, 10),
    w(1, '<script>x', 2, 20, 30),
    r(2, '<script>x', 1, 40, 50),
    r(7, 'ok', null, 0, 60),
  ]);
  const checks = analyze({ ops });
  const html = renderTimelineHtml({
    title: 'run <1>',
    ops,
    checks,
    faults: [
      { kind: 'partition', target: 'n1|n2,n3', startMs: 15, endMs: 35 },
      { kind: 'kill', target: 'n2', startMs: 45 },
    ],
  });
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script/i, 'no scripts and user text escaped');
  assert.doesNotMatch(html, /(src|href)=/, 'self-contained');
  assert.equal(html.match(/class="label"/g)?.length, 4, 'one lane per process');
  assert.equal(html.match(/class="fault"/g)?.length, 2);
  assert.match(html, /<b>partition n1\|n2,n3<\/b>/);
  assert.equal(html.match(/class="op [^"]*culprit/g)?.length, 1, 'the stale read is outlined');
  assert.match(html, /class="op s-ok f-read culprit"[^>]*top:36px/, 'in lane 3 (process 2)');
  assert.equal(html.match(/class="op [^"]*context/g)?.length, 2, 'the prefix is marked');
  assert.match(html, /run &#60;1&#62;/);
  assert.match(html, /class="verdict fail"/);
  assert.match(html, /<pre>key &#34;&#60;script&#62;x&#34;: no linearization exists/);
});

test('report files are written: result.json, verdict.txt, timeline.html', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-chaos-report-'));
  try {
    const ops = healthy();
    const report = await writeReportFiles(dir, { title: 't', ops, checks: analyze({ ops }) });
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'result.json'), 'utf8')), report);
    assert.equal(await readFile(join(dir, 'verdict.txt'), 'utf8'), `${report.line}\n`);
    assert.match(await readFile(join(dir, 'timeline.html'), 'utf8'), /<\/html>/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
