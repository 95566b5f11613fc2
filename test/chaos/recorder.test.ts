/**
 * The runner's recorder and outcome rules: an `info` outcome retires the process (Jepsen's
 * rule), the recorded history parses and pairs, and errors are classified conservatively.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pairOperations, parseHistory, serializeHistory } from '../../src/chaos/history.js';
import { HistoryRecorder } from '../../src/chaos/recorder.js';
import { classifyError } from '../../src/chaos/workload.js';

describe('HistoryRecorder', () => {
  test('ok keeps the process, info retires it; the history pairs and round-trips', () => {
    const r = new HistoryRecorder();
    let p = r.newProcess();
    const first = p;
    const w = r.invoke(p, 'write', 'k', 1);
    p = r.complete(w, 'ok', { revision: 2 });
    assert.equal(p, first);
    const c = r.invoke(p, 'cas', 'k', [1, 2]);
    p = r.complete(c, 'info', { error: '4 deadline exceeded' });
    assert.notEqual(p, first, 'a process whose operation ended in info never invokes again');
    const read = r.invoke(p, 'read', 'k', null);
    p = r.complete(read, 'ok', { readValue: 2 });
    const failed = r.invoke(p, 'read', 'k', null);
    r.complete(failed, 'fail', { error: 'unavailable' });

    const events = parseHistory(serializeHistory(r.events));
    assert.deepEqual(events, r.events);
    const ops = pairOperations(events);
    assert.deepEqual(
      ops.map((o) => [o.f, o.status, o.process === first]),
      [
        ['write', 'ok', true],
        ['cas', 'info', true],
        ['read', 'ok', false],
        ['read', 'fail', false],
      ],
    );
    assert.equal(ops[0]!.revision, 2);
    assert.equal(ops[1]!.completeMs, Number.POSITIVE_INFINITY);
    assert.equal(ops[2]!.output, 2);
    assert.deepEqual(r.snapshot, { invoked: 4, ok: 2, fail: 1, info: 1 });
    for (let i = 1; i < events.length; i++) {
      assert.ok(events[i]!.timeMs >= events[i - 1]!.timeMs, 'monotonic times');
    }
  });

  test('one open operation per process; a full history stops invocations', () => {
    const r = new HistoryRecorder(4);
    const p = r.newProcess();
    r.invoke(p, 'read', 'k', null);
    assert.throws(() => r.invoke(p, 'read', 'k', null), /already has an operation open/);
    assert.equal(r.full, false);
    r.invoke(r.newProcess(), 'read', 'k', null);
    assert.equal(r.full, true);
  });
});

describe('classifyError', () => {
  test('reads fail; writes are unknown unless they certainly never reached a log', () => {
    const deadline = { name: 'Error', message: 'x', code: 4, details: 'Deadline exceeded' };
    const refused = {
      name: 'Error',
      message: 'x',
      code: 14,
      details: 'No connection established. Last error: connect ECONNREFUSED',
    };
    const noLeader = { name: 'Error', message: 'x', code: 14, details: 'etcdserver: no leader' };
    const timeout = {
      name: 'Error',
      message: 'x',
      code: 14,
      details: 'etcdserver: request timed out',
    };
    const reset = { name: 'Error', message: 'x', code: 14, details: 'Connection dropped' };
    assert.equal(classifyError('read', deadline), 'fail');
    assert.equal(classifyError('write', deadline), 'info');
    assert.equal(classifyError('cas', timeout), 'info');
    assert.equal(classifyError('write', reset), 'info');
    assert.equal(classifyError('write', refused), 'fail');
    assert.equal(classifyError('cas', noLeader), 'fail');
    const standby = {
      name: 'Error',
      message: 'x',
      code: 14,
      details: 'tandem: member n4 is a hot standby and serves no client traffic; use a voter',
    };
    assert.equal(classifyError('write', standby), 'fail');
    // The same words from anything else are no proof that nothing was proposed.
    assert.equal(classifyError('write', { ...standby, code: 4 }), 'info');
  });
});
