import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LATENCY_SAMPLES_MAX, LiveStats, percentile, WINDOW_MS } from '../../src/api/live-stats.js';

describe('LiveStats', () => {
  test('writes, reads and p99 of the last complete window; other calls not counted', () => {
    let now = 0;
    let loopReads = 0;
    const stats = new LiveStats({
      nowMs: () => now,
      eventLoopDelayMs: () => {
        loopReads++;
        return 12.5;
      },
    });
    for (let i = 0; i < 30; i++) stats.noteCall('/etcdserverpb.KV/Put', 0.002);
    stats.noteCall('/etcdserverpb.KV/Txn', 0.002);
    for (let i = 0; i < 98; i++) stats.noteCall('/etcdserverpb.KV/Range', 0.001);
    stats.noteCall('/etcdserverpb.KV/Range', 0.5); // one slow read among 130 calls
    stats.noteCall('/etcdserverpb.Lease/LeaseGrant', 9);
    // Within the window nothing is complete yet.
    assert.equal(stats.sample().writesPerSecond, 0);
    now = WINDOW_MS;
    const s = stats.sample();
    assert.equal(s.writesPerSecond, 31);
    assert.equal(s.readsPerSecond, 99);
    // The p99 of 130 calls is the 129th smallest: 2 ms (the 500 ms call is the largest).
    assert.equal(s.latencyP99Ms, 2);
    assert.equal(s.eventLoopDelayMs, 12.5);
    assert.equal(stats.sample(), s, 'the same window until the next one completes');
    assert.equal(loopReads, 1);
  });

  test('an idle stretch reads as idle, not as the last busy window', () => {
    let now = 0;
    const stats = new LiveStats({ nowMs: () => now });
    stats.noteCall('/etcdserverpb.KV/Put', 0.001);
    now = 5 * WINDOW_MS;
    const s = stats.sample();
    assert.equal(s.writesPerSecond, 0);
    assert.equal(s.latencyP99Ms, null);
    assert.equal(s.eventLoopDelayMs, null);
  });

  test('latencies kept per window are bounded (a reservoir past the limit)', () => {
    let now = 0;
    const stats = new LiveStats({ nowMs: () => now, random: () => 0.999 });
    for (let i = 0; i < 3 * LATENCY_SAMPLES_MAX; i++)
      stats.noteCall('/etcdserverpb.KV/Range', 0.001);
    now = WINDOW_MS;
    assert.equal(stats.sample().readsPerSecond, 3 * LATENCY_SAMPLES_MAX);
    assert.equal(stats.sample().latencyP99Ms, 1);
  });

  test('percentile: nearest rank', () => {
    assert.equal(percentile([], 0.99), null);
    assert.equal(percentile([5], 0.99), 5);
    assert.equal(percentile([3, 1, 2, 4], 0.5), 2);
    assert.equal(
      percentile(
        Array.from({ length: 100 }, (_, i) => i + 1),
        0.99,
      ),
      99,
    );
  });
});
