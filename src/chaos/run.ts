/**
 * `tandem chaos`: a real local cluster under faults, checked.
 *
 *   1. start the cluster (ChaosCluster: processes, temp data directories, free loopback ports);
 *   2. start one watcher per key, then the clients, the lease holder (lease-workload.ts) and
 *      the nemesis, for `timeMs`;
 *   3. stop the clients (their last operations complete or time out), stop the nemesis;
 *   4. heal: resume, restart the dead, heal every link, wait for a leader;
 *   5. final linearizable reads of every key, appended to the history as read operations (the
 *      lost-write check's final values), watchers catch up to the final revision;
 *   6. analyze (linearizability, lost writes, watches, leases, availability) and write the
 *      report: history.jsonl, faults.json, plan.json, watches.json, leases.json, result.json,
 *      verdict.txt, timeline.html, and the members' logs under logs/.
 *
 * The seed decides the fault plan, the clients' choices of operations, keys and members, and
 * the watchers' members; the interleaving is real time and differs between runs.
 */
import { setMaxListeners } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sleep } from '../cli/local-net.js';
import { STANDBY_MODES, type StandbyMode } from '../cluster/commands.js';
import { analyze } from './analyze.js';
import { ChaosCluster, type NetMode } from './cluster.js';
import { type GrpcError, KvClient } from './etcd-client.js';
import { pairOperations, serializeHistory, type Value } from './history.js';
import {
  LEASE_TTL_SECONDS,
  type LeaseWorkloadRecord,
  newLeaseRecord,
  runLeaseHolder,
} from './lease-workload.js';
import { healAll, type NemesisRecord, newNemesisRecord, runNemesis } from './nemesis.js';
import { kernelNetUnavailable } from './netns.js';
import { type FaultKind, planFaults } from './plan.js';
import { HistoryRecorder } from './recorder.js';
import { type ChaosReport, writeReportFiles } from './report.js';
import { classifyError, KeyWatcher, newWorkloadContext, runClient } from './workload.js';

export const CHAOS_TIME_MS_MAX = 24 * 3600_000;
export const CHAOS_CLIENTS_MAX = 256;
export const CHAOS_KEYS_MAX = 1000;
export const CHAOS_STANDBYS_MAX = 8;
/** replaceAfter of the members when the run has standbys: short, so kills trigger promotions. */
export const CHAOS_REPLACE_AFTER_MS_DEFAULT = 2_000;
/** Final reads: attempts per key before giving up (each bounded by the op timeout). */
const FINAL_READ_ATTEMPTS_MAX = 20;
/** After healing, how long the cluster has to elect a leader. */
const HEAL_LEADER_WAIT_MS = 30_000;
/** How long watchers have to catch up to the final revision. */
const WATCH_CATCH_UP_MS = 15_000;
/** The lease holder polls for expired keys at most this long after the clients stop. */
const LEASE_POLL_AFTER_STOP_MS = LEASE_TTL_SECONDS * 1000 + 2_000;
/** Lease expiry observed this much early is still accepted (timer and clock granularity). */
const LEASE_TOLERANCE_MS = 50;
/** Progress callbacks at most this often. */
const PROGRESS_INTERVAL_MS = 500;

export interface ChaosOptions {
  readonly voters: number;
  /** Standbys besides the voters (default 0); the redundancy policy promotes them. */
  readonly standbys?: number;
  /** Their mode, and the mode a replaced voter is demoted to (default hot). */
  readonly standbyMode?: StandbyMode;
  /** `redundancy.replaceAfter` (default CHAOS_REPLACE_AFTER_MS_DEFAULT with standbys). */
  readonly replaceAfterMs?: number;
  /** Every member gets a WAL mirror (default true: a bit flip is then repaired). */
  readonly walMirror?: boolean;
  /**
   * 'kernel': namespaces and nftables/netem (root); 'transport': loopback and the transport's
   * test-mode rules; 'auto' (default): kernel when it works here, else transport.
   */
  readonly net?: NetMode | 'auto';
  readonly timeMs: number;
  readonly clients: number;
  readonly keys: number;
  readonly faults: readonly FaultKind[];
  readonly seed: number;
  /** The report folder (created). */
  readonly outDir: string;
  readonly opTimeoutMs?: number;
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  readonly snapshotEntries?: number;
  /** Run the lease holder (default true): leases kept alive, then left to expire. */
  readonly leases?: boolean;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: ChaosProgress) => void;
  readonly onNote?: (text: string) => void;
}

export interface ChaosProgress {
  readonly phase: 'starting' | 'running' | 'healing' | 'checking' | 'done';
  readonly elapsedMs: number;
  readonly totalMs: number;
  readonly ops: number;
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
  readonly fault: string | null;
}

export interface ChaosOutcome {
  readonly verdict: 'pass' | 'fail' | 'unknown' | 'aborted';
  /** 0 pass, 1 violation, 2 unknown or aborted. */
  readonly exitCode: 0 | 1 | 2;
  readonly line: string;
  readonly outDir: string;
  readonly report: ChaosReport | null;
  readonly opsCount: number;
  readonly nemesis: NemesisRecord | null;
  /** How links were faulted. */
  readonly net: NetMode | null;
}

export function validateChaosOptions(o: ChaosOptions): string[] {
  const problems: string[] = [];
  const int = (v: number, min: number, max: number, what: string): void => {
    if (!Number.isSafeInteger(v) || v < min || v > max) {
      problems.push(`${what}: expected an integer between ${min} and ${max}, got ${v}`);
    }
  };
  int(o.voters, 1, 7, '--voters');
  if (o.voters % 2 === 0) problems.push(`--voters: expected an odd number, got ${o.voters}`);
  int(o.timeMs, 1000, CHAOS_TIME_MS_MAX, '--time (ms)');
  int(o.clients, 1, CHAOS_CLIENTS_MAX, '--clients');
  int(o.keys, 1, CHAOS_KEYS_MAX, '--keys');
  int(o.seed, 0, 2 ** 32 - 1, '--seed');
  int(o.standbys ?? 0, 0, CHAOS_STANDBYS_MAX, '--standbys');
  if (o.replaceAfterMs !== undefined)
    int(o.replaceAfterMs, 1_001, 3_600_000, '--replace-after (ms)');
  if (o.standbyMode !== undefined && !STANDBY_MODES.includes(o.standbyMode)) {
    problems.push(`--standby-mode: expected hot, warm or cold, got ${o.standbyMode}`);
  }
  if (o.net !== undefined && !['kernel', 'transport', 'auto'].includes(o.net)) {
    problems.push(`--net: expected kernel, transport or auto, got ${o.net}`);
  }
  return problems;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosOutcome> {
  const outDir = resolve(options.outDir);
  mkdirSync(join(outDir, 'logs'), { recursive: true });
  const controller = new AbortController();
  const signal = controller.signal;
  // Every client and watcher sleeps on it.
  setMaxListeners(options.clients + options.keys + 16, signal);
  const abort = (): void => controller.abort();
  options.signal?.addEventListener('abort', abort, { once: true });
  const note = options.onNote ?? (() => {});
  const opTimeoutMs = options.opTimeoutMs ?? 2_000;
  const standbys = options.standbys ?? 0;
  const walMirror = options.walMirror ?? true;
  const replaceAfterMs =
    options.replaceAfterMs ?? (standbys > 0 ? CHAOS_REPLACE_AFTER_MS_DEFAULT : undefined);
  const unavailable = options.net === 'transport' ? 'not asked for' : await kernelNetUnavailable();
  if (options.net === 'kernel' && unavailable !== null) {
    const line = `ABORTED (--net kernel: ${unavailable})`;
    writeFileSync(join(outDir, 'verdict.txt'), `${line}\n`);
    return {
      verdict: 'aborted',
      exitCode: 2,
      line,
      outDir,
      report: null,
      opsCount: 0,
      nemesis: null,
      net: null,
    };
  }
  const net: NetMode = unavailable === null ? 'kernel' : 'transport';
  if (options.net !== 'transport' && unavailable !== null)
    note(`net=transport: kernel faults unavailable (${unavailable})`);
  const plan = planFaults({
    seed: options.seed,
    voters: options.voters,
    members: options.voters + standbys,
    durationMs: options.timeMs,
    kinds: options.faults,
  });
  writeFileSync(
    join(outDir, 'plan.json'),
    `${JSON.stringify({ ...summary(options), net, walMirror, replaceAfterMs: replaceAfterMs ?? null, plan }, null, 2)}\n`,
  );
  note(
    `chaos seed=${options.seed} net=${net} voters=${options.voters} standbys=${standbys}${standbys > 0 ? `(${options.standbyMode ?? 'hot'})` : ''} mirror=${walMirror ? 'on' : 'off'} time=${options.timeMs}ms clients=${options.clients} keys=${options.keys} faults=${options.faults.join(',') || 'none'} planned=${plan.length} out=${outDir}`,
  );

  const recorder = new HistoryRecorder();
  const progress = (phase: ChaosProgress['phase'], fault: string | null = null): void => {
    const c = recorder.snapshot;
    options.onProgress?.({
      phase,
      elapsedMs: Math.min(recorder.nowMs() - runStartMs, options.timeMs),
      totalMs: options.timeMs,
      ops: c.invoked,
      ok: c.ok,
      fail: c.fail,
      info: c.info,
      fault,
    });
  };
  let runStartMs = recorder.nowMs();
  progress('starting');

  let cluster: ChaosCluster | null = null;
  let nemesis: NemesisRecord | null = null;
  const watchers: KeyWatcher[] = [];
  const finalValues = new Map<string, Value>();
  const leaseRecord: LeaseWorkloadRecord = newLeaseRecord();
  const leasesOn = options.leases ?? true;
  let aborted = false;
  /** When the clients stopped (earlier than planned on abort): the availability window's end. */
  let clientsStoppedMs = Number.POSITIVE_INFINITY;
  try {
    cluster = await ChaosCluster.start({
      voters: options.voters,
      standbys,
      ...(options.standbyMode !== undefined && { standbyMode: options.standbyMode }),
      walMirror,
      net,
      ...(replaceAfterMs !== undefined && { replaceAfterMs }),
      logDir: join(outDir, 'logs'),
      ...(options.heartbeatMs !== undefined && { heartbeatMs: options.heartbeatMs }),
      ...(options.electionMs !== undefined && { electionMs: options.electionMs }),
      ...(options.snapshotEntries !== undefined && { snapshotEntries: options.snapshotEntries }),
    });
    const endpoints = cluster.members.map((m) => m.client);
    note(
      `cluster up: ${cluster.members.map((m) => `${m.name}${m.foundingRole === 'standby' ? '(standby)' : ''}=${m.client}`).join(' ')}${cluster.net !== null ? ` (namespaces ${cluster.net.prefix}-*, slow links by ${cluster.net.delay ? 'netem' : 'the transport: no sch_netem in this kernel'})` : ''}`,
    );
    const keys = Array.from({ length: options.keys }, (_, i) => `chaos/k${i}`);
    keys.forEach((key, i) => {
      const w = new KeyWatcher(key, endpoints, options.seed + 7919 * (i + 1));
      watchers.push(w);
      w.start();
    });

    runStartMs = recorder.nowMs();
    const stopAtMs = runStartMs + options.timeMs;
    const ctx = newWorkloadContext({
      recorder,
      endpoints,
      keys,
      opTimeoutMs,
      stopAtMs,
      signal,
    });
    const live: NemesisRecord = newNemesisRecord();
    nemesis = live;
    const ticker = setInterval(() => progress('running', live.current), PROGRESS_INTERVAL_MS);
    const nemesisDone = runNemesis({
      record: live,
      cluster,
      plan,
      nowMs: () => recorder.nowMs(),
      startMs: runStartMs,
      endMs: stopAtMs,
      signal,
      onNote: note,
      voters: options.voters,
      seed: options.seed,
    });
    const clientsDone = Promise.all(
      Array.from({ length: options.clients }, (_, i) =>
        runClient(ctx, (options.seed * 31 + i + 1) >>> 0),
      ),
    );
    const leasesDone = leasesOn
      ? runLeaseHolder(
          {
            endpoints,
            opTimeoutMs,
            nowMs: () => recorder.nowMs(),
            stopAtMs,
            pollUntilMs: stopAtMs + LEASE_POLL_AFTER_STOP_MS,
            signal,
          },
          (options.seed * 31 + 104_729) >>> 0,
          leaseRecord,
        )
      : Promise.resolve();
    try {
      await nemesisDone;
      await clientsDone;
      await leasesDone;
    } finally {
      clearInterval(ticker);
    }
    aborted = signal.aborted;
    clientsStoppedMs = recorder.nowMs();

    progress('healing');
    note('healing: resuming, restarting, healing links; waiting for a leader');
    await healAll(cluster);
    await cluster.waitForLeader(HEAL_LEADER_WAIT_MS);

    const finalRevision = await finalReads(recorder, endpoints, keys, opTimeoutMs, finalValues);
    note(`final reads: ${finalValues.size}/${keys.length} keys at revision ${finalRevision}`);
    const caughtUp = await Promise.all(
      watchers.map((w) => w.catchUp(finalRevision, WATCH_CATCH_UP_MS)),
    );
    if (!caughtUp.every(Boolean)) note('some watchers did not confirm the final revision');
  } catch (error) {
    note(`chaos run aborted: ${(error as Error).stack ?? String(error)}`);
    aborted = true;
  } finally {
    for (const w of watchers) w.stop();
    if (cluster !== null) await cluster.destroy();
    options.signal?.removeEventListener('abort', abort);
  }

  progress('checking');
  const events = recorder.events;
  writeFileSync(join(outDir, 'history.jsonl'), serializeHistory(events));
  const faults = nemesis?.applied ?? [];
  writeFileSync(
    join(outDir, 'faults.json'),
    `${JSON.stringify({ net, applied: faults, skipped: nemesis?.skipped ?? [], anomalies: nemesis?.anomalies ?? [], lost: nemesis?.lost ?? [], restores: nemesis?.restores ?? [] }, null, 2)}\n`,
  );
  const ops = pairOperations(events);
  const watcherLogs = watchers.map((w) => w.log());
  writeFileSync(join(outDir, 'watches.json'), `${JSON.stringify(watcherLogs)}\n`);
  if (leasesOn) {
    writeFileSync(join(outDir, 'leases.json'), `${JSON.stringify(leaseRecord, null, 2)}\n`);
  }
  const checks = analyze({
    ops,
    finalValues,
    watchers: watcherLogs,
    ...(leasesOn && { leases: leaseRecord.observations, leaseToleranceMs: LEASE_TOLERANCE_MS }),
    availabilityWindow: {
      fromMs: runStartMs,
      toMs: Math.max(runStartMs, Math.min(runStartMs + options.timeMs, clientsStoppedMs)),
    },
  });
  const report = await writeReportFiles(outDir, {
    title: `tandem chaos seed=${options.seed} (${options.voters} voters, ${standbys} standbys, net=${net}, ${options.faults.join(',') || 'no faults'})`,
    ops,
    checks,
    faults,
  });
  progress('done');
  const netNote = ` [net=${net}${nemesis !== null && nemesis.lost.length > 0 ? `; given up: ${nemesis.lost.join(',')}` : ''}]`;
  if (aborted) {
    const line = `ABORTED (${report.line})${netNote}`;
    writeFileSync(join(outDir, 'verdict.txt'), `${line}\n`);
    return {
      verdict: 'aborted',
      exitCode: 2,
      line,
      outDir,
      report,
      opsCount: ops.length,
      nemesis,
      net,
    };
  }
  // A fault that showed what the design forbids (a corrupt WAL accepted) fails the run.
  const anomalies = nemesis?.anomalies ?? [];
  if (anomalies.length > 0) {
    const line = `FAIL nemesis: ${anomalies.join('; ')} (${report.line})${netNote}`;
    writeFileSync(join(outDir, 'verdict.txt'), `${line}\n`);
    return {
      verdict: 'fail',
      exitCode: 1,
      line,
      outDir,
      report,
      opsCount: ops.length,
      nemesis,
      net,
    };
  }
  const exitCode = report.verdict === 'pass' ? 0 : report.verdict === 'fail' ? 1 : 2;
  const line = `${report.line}${netNote}`;
  writeFileSync(join(outDir, 'verdict.txt'), `${line}\n`);
  return {
    verdict: report.verdict,
    exitCode,
    line,
    outDir,
    report,
    opsCount: ops.length,
    nemesis,
    net,
  };
}

function summary(o: ChaosOptions): Record<string, unknown> {
  return {
    seed: o.seed,
    voters: o.voters,
    standbys: o.standbys ?? 0,
    standbyMode: o.standbyMode ?? 'hot',
    timeMs: o.timeMs,
    clients: o.clients,
    keys: o.keys,
    faults: o.faults,
  };
}

/**
 * One linearizable read per key after healing, recorded as read operations; the values go to
 * `finalValues` (the lost-write check). Returns the highest header revision seen.
 */
async function finalReads(
  recorder: HistoryRecorder,
  endpoints: readonly string[],
  keys: readonly string[],
  opTimeoutMs: number,
  finalValues: Map<string, Value>,
): Promise<number> {
  let revision = 0;
  let process = recorder.newProcess();
  for (const key of keys) {
    for (let attempt = 0; attempt < FINAL_READ_ATTEMPTS_MAX; attempt++) {
      const client = new KvClient(endpoints[attempt % endpoints.length]!);
      const op = recorder.invoke(process, 'read', key, null);
      try {
        const r = await client.get(key, opTimeoutMs * 2);
        const value = r.value === null ? null : Number(r.value);
        process = recorder.complete(op, 'ok', { readValue: value });
        finalValues.set(key, value);
        revision = Math.max(revision, r.revision);
        break;
      } catch (error) {
        const e = error as GrpcError;
        process = recorder.complete(op, classifyError('read', e), { error: e.message });
        await sleep(200);
      } finally {
        client.close();
      }
    }
  }
  return revision;
}
