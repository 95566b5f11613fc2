/**
 * Runs a fault plan (plan.ts) against a local cluster and records what it really did: each
 * fault's start and end on the history's clock, for the report's timeline.
 *
 * Before each fault it waits (bounded) until every member answers its admin endpoint, so a
 * member still restarting from the previous fault is never counted as healthy: together with a
 * plan of non-overlapping minority faults, some majority is always up. A step that cannot start
 * before the fault phase ends is skipped and recorded as skipped.
 *
 * Faults and how they are made:
 * - kill: SIGKILL, then a restart (same data directory and ports) after the hold time;
 * - restart: SIGTERM (a clean stop), then a restart;
 * - pause: SIGSTOP, then SIGCONT;
 * - partition: drop every message between the targets and the others, both ways (the
 *   transport's test-mode fault rules, over the admin API);
 * - slow: a delay and a loss rate on the targets' links (or on every link), both ways;
 * - disk: the target's next WAL fsync fails (EIO, through its test-mode fault file system): it
 *   must stop rather than go on with a log it cannot trust; then a restart (SIGKILL, start).
 * Kernel-level faults (network namespaces, tc netem, iptables) are a later step.
 */
import type { LinkRule, LocalCluster } from './cluster.js';
import { sleep } from './cluster.js';
import { describeStep, type FaultStep } from './plan.js';
import type { FaultInterval } from './report.js';

/** How long the nemesis waits for every member to answer before a fault. */
export const NEMESIS_HEALTH_WAIT_MS = 30_000;

export interface AppliedFault extends FaultInterval {
  readonly step: number;
  readonly description: string;
}

export interface NemesisRecord {
  readonly applied: AppliedFault[];
  readonly skipped: { step: number; description: string; reason: string }[];
  /** The fault in force now (for progress lines), or null. */
  current: string | null;
}

export interface NemesisOptions {
  readonly cluster: LocalCluster;
  readonly plan: readonly FaultStep[];
  /** The history's clock (ms), shared so that fault intervals line up with operations. */
  readonly nowMs: () => number;
  /** Recorder time at which the fault phase began (plan times are offsets from it). */
  readonly startMs: number;
  /** Recorder time at which the fault phase ends: no fault starts or lasts past it. */
  readonly endMs: number;
  readonly signal: AbortSignal;
  readonly onNote?: (text: string) => void;
  /** Filled as the nemesis goes (a caller may read `current` meanwhile); a new one if absent. */
  readonly record?: NemesisRecord;
}

export async function runNemesis(options: NemesisOptions): Promise<NemesisRecord> {
  const { cluster, plan, nowMs, signal } = options;
  const names = cluster.members.map((m) => m.name);
  const record: NemesisRecord = options.record ?? { applied: [], skipped: [], current: null };
  for (const step of plan) {
    const description = describeStep(step, names);
    const skip = (reason: string): void => {
      record.skipped.push({ step: step.index, description, reason });
    };
    if (signal.aborted) break;
    const dueMs = options.startMs + step.atMs;
    if (dueMs > nowMs()) await sleep(dueMs - nowMs(), signal);
    if (signal.aborted) break;
    const healthy = await allUp(cluster, Math.max(0, options.endMs - nowMs()), signal);
    if (!healthy) {
      skip('a member was still down');
      continue;
    }
    const startMs = nowMs();
    if (startMs + step.durationMs > options.endMs) {
      skip('no time left in the fault phase');
      continue;
    }
    record.current = description;
    options.onNote?.(`nemesis: ${description}`);
    const heal = await inject(cluster, step);
    await sleep(step.durationMs, signal);
    await heal();
    record.current = null;
    const targets =
      step.allLinks === true ? 'all links' : step.targets.map((t) => names[t]).join('+');
    record.applied.push({
      step: step.index,
      kind: step.kind,
      startMs,
      endMs: nowMs(),
      target: targets,
      description,
    });
  }
  return record;
}

async function allUp(
  cluster: LocalCluster,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<boolean> {
  const waitMs = Math.min(timeoutMs, NEMESIS_HEALTH_WAIT_MS);
  const up = await Promise.all(cluster.members.map((m) => cluster.waitUp(m.index, waitMs, signal)));
  return up.every(Boolean);
}

/** Injects the fault; returns the function that heals it. */
async function inject(cluster: LocalCluster, step: FaultStep): Promise<() => Promise<void>> {
  const all = cluster.members.map((m) => m.index);
  const targets = step.targets;
  switch (step.kind) {
    case 'kill':
      await Promise.all(targets.map((t) => cluster.kill(t)));
      return async () => {
        for (const t of targets) cluster.spawn(t);
      };
    case 'restart':
      await Promise.all(targets.map((t) => cluster.stop(t)));
      return async () => {
        for (const t of targets) cluster.spawn(t);
      };
    case 'disk':
      await Promise.all(targets.map((t) => cluster.failNextWalSync(t)));
      return async () => {
        await Promise.all(targets.map((t) => cluster.kill(t)));
        for (const t of targets) cluster.spawn(t);
      };
    case 'pause':
      for (const t of targets) cluster.pause(t);
      return async () => {
        for (const t of targets) cluster.resume(t);
      };
    case 'partition': {
      const others = all.filter((i) => !targets.includes(i));
      await setBothWays(cluster, targets, others, { dropRate: 1 });
      return () => healLinks(cluster);
    }
    case 'slow': {
      const rule = { dropRate: step.dropRate ?? 0, delayMs: step.delayMs ?? 0 };
      if (step.allLinks === true) await setBothWays(cluster, all, all, rule);
      else {
        const others = all.filter((i) => !targets.includes(i));
        await setBothWays(cluster, targets, others, rule);
      }
      return () => healLinks(cluster);
    }
  }
}

/** Sets `rule` on every link between a member of `a` and a member of `b`, in both directions. */
async function setBothWays(
  cluster: LocalCluster,
  a: readonly number[],
  b: readonly number[],
  rule: Omit<LinkRule, 'peer'>,
): Promise<void> {
  const links = new Map<number, LinkRule[]>();
  const add = (from: number, to: number): void => {
    if (from === to) return;
    const list = links.get(from) ?? [];
    if (!list.some((l) => l.peer === cluster.members[to]!.name)) {
      list.push({ peer: cluster.members[to]!.name, ...rule });
    }
    links.set(from, list);
  };
  for (const x of a)
    for (const y of b) {
      add(x, y);
      add(y, x);
    }
  await Promise.all([...links].map(([from, rules]) => cluster.setLinks(from, rules)));
}

/** Heals every link of every running member. */
export async function healLinks(cluster: LocalCluster): Promise<void> {
  await Promise.all(cluster.members.map((m) => cluster.clearLinks(m.index)));
}

/** Undoes whatever a stopped nemesis may have left: resumes, restarts, heals links. */
export async function healAll(cluster: LocalCluster): Promise<void> {
  for (const m of cluster.members) cluster.resume(m.index);
  for (const m of cluster.members) if (cluster.state(m.index) === 'down') cluster.spawn(m.index);
  await Promise.all(cluster.members.map((m) => cluster.waitUp(m.index, NEMESIS_HEALTH_WAIT_MS)));
  await healLinks(cluster);
}
