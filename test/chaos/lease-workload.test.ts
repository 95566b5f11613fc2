/**
 * The lease workload against one real member (no faults): each round's keys are observed gone,
 * after their TTL counted from the last acknowledged keep-alive, and the lease check passes.
 * Then the same observations, moved as if a keep-alive had been acknowledged later than the
 * disappearance allows, fail the check: the records are precise enough to catch early expiry.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { analyze } from '../../src/chaos/analyze.js';
import type { LeaseObservation } from '../../src/chaos/checks.js';
import { ChaosCluster } from '../../src/chaos/cluster.js';
import {
  LEASE_KEY_PREFIX,
  LEASE_KEYS_PER_LEASE,
  newLeaseRecord,
  runLeaseHolder,
} from '../../src/chaos/lease-workload.js';

const RUN_MS = 8_000;

test('lease workload: keys vanish after their TTL, and an early vanishing is caught', {
  timeout: 90_000,
}, async () => {
  const logDir = mkdtempSync(join(tmpdir(), 'tandem-chaos-lease-'));
  let cluster: ChaosCluster | null = null;
  try {
    cluster = await ChaosCluster.start({ voters: 1, logDir });
    const endpoints = cluster.members.map((m) => m.client);
    const t0 = performance.now();
    const nowMs = (): number => performance.now() - t0;
    const record = newLeaseRecord();
    await runLeaseHolder(
      {
        endpoints,
        opTimeoutMs: 2_000,
        nowMs,
        stopAtMs: RUN_MS,
        pollUntilMs: RUN_MS + 4_000,
        signal: new AbortController().signal,
      },
      7,
      record,
    );
    const context = JSON.stringify(record, null, 2);
    assert.ok(record.grantsInvoked >= 2, context);
    assert.equal(record.grantsFailed, 0, context);
    assert.equal(record.putsUnacknowledged, 0, context);
    assert.ok(record.keepAlivesAcknowledged >= 1, context);
    assert.equal(record.observations.length, record.grantsInvoked * LEASE_KEYS_PER_LEASE);
    for (const o of record.observations) {
      assert.ok(o.key.startsWith(LEASE_KEY_PREFIX));
      assert.equal(o.ttlMs, 2_000);
      // No faults: every key is seen gone, after (at least) its TTL.
      assert.ok(o.missingObservedMs !== undefined, context);
      const refreshedMs = Math.max(o.grantedMs, ...o.keepAliveMs);
      assert.ok(o.missingObservedMs >= refreshedMs + o.ttlMs, context);
    }
    const good = analyze({ ops: [], leases: record.observations, leaseToleranceMs: 50 });
    assert.equal(good.leases?.verdict, 'ok');
    assert.equal(good.leases?.leasesChecked, record.observations.length);

    // A keep-alive acknowledged 1 s before the key was seen gone: expiry 1 s too early.
    const early: LeaseObservation[] = record.observations.map((o) => ({
      ...o,
      keepAliveMs: [...o.keepAliveMs, o.missingObservedMs! - 1_000],
    }));
    const bad = analyze({ ops: [], leases: early, leaseToleranceMs: 50 });
    assert.equal(bad.leases?.verdict, 'violation');
    assert.equal(bad.leases?.problems.length, early.length);
  } finally {
    await cluster?.destroy();
    rmSync(logDir, { recursive: true, force: true });
  }
});
