/**
 * Runs a fault plan (plan.ts) against a local cluster and records what it really did: each
 * fault's start and end on the history's clock, for the report's timeline.
 *
 * Before each fault it waits (bounded) until every member answers its admin endpoint, so a
 * member still restarting from the previous fault is never counted as healthy: together with a
 * plan of non-overlapping minority faults, some majority is always up. With standbys it also
 * waits until the leader counts the configured number of voters again (a replacement done). A
 * step that cannot start before the fault phase ends is skipped and recorded as skipped.
 *
 * Faults and how they are made (links: cluster.ts, kernel or transport; see netns.ts):
 * - kill: SIGKILL, then a restart (same data directory and ports) after the hold time;
 * - restart: SIGTERM (a clean stop), then a restart;
 * - pause: SIGSTOP, then SIGCONT;
 * - partition: drop everything between the targets and the others, both ways, or one way
 *   (only what the targets send);
 * - slow: a delay with jitter and a loss rate on the targets' links (or on every link), both ways;
 * - lossy: a loss rate alone, likewise;
 * - disk: the target's next WAL fsync fails (EIO, through its test-mode fault file system): it
 *   must stop rather than go on with a log it cannot trust; then a restart (SIGKILL, start);
 * - torn: the target's storage write that crosses N more bytes lands only a prefix, then every
 *   call fails as after a crash (fault-fs crashAfterBytes): the member stops; after the hold
 *   time it is killed and restarted, and recovery must cut the torn tail;
 * - bitflip: the target is killed, one bit of a WAL record that a valid record follows is
 *   flipped on disk (disk-faults.ts), and it is restarted. With a WAL mirror it must repair the
 *   record and start. Without one it must either start having fetched the committed entries
 *   from its peers or proved the damage harmless (protocol-aware recovery, logged), or refuse
 *   to start naming the corruption (WAL_CORRUPT): it is then given up for the rest of the run —
 *   an expected, recorded outage; the others go on and every check must still hold. No other fault is injected that would take the cluster past its minority budget
 *   with that member gone. Anything else is an anomaly, and an anomaly fails the run;
 * - membership: an operator's promote, demote or standby (POST /member/<op> to the leader) of a
 *   candidate chosen at run time (roles change as the policy replaces members); a refusal by
 *   the policy is recorded as skipped with its reason.
 */

import { adminRequest, sleep } from '../cli/local-net.js';
import { Prng } from '../util/prng.js';
import type { ChaosCluster } from './cluster.js';
import { byteAt, flipWalBit } from './disk-faults.js';
import { describeStep, type FaultStep, minorityMax } from './plan.js';
import type { FaultInterval } from './report.js';

/** How long the nemesis waits for every member to answer before a fault. */
export const NEMESIS_HEALTH_WAIT_MS = 30_000;
/** After a member failed to come up: how long its exit may take to be seen. */
const EXIT_WAIT_MS = 5_000;
/** How long a member with a corrupt WAL has to refuse to start (or one with a mirror to start). */
const BITFLIP_VERDICT_WAIT_MS = 30_000;
const HEALTH_POLL_MS = 200;
/** The factor short this long before the nemesis promotes a spare itself (and between tries). */
const OPERATOR_RESTORE_AFTER_MS = 3_000;
/** Rounds of one health wait (bounds the loop by count as well as by time). */
const HEALTH_POLL_ROUNDS_MAX = 1_000;

export interface AppliedFault extends FaultInterval {
  readonly step: number;
  readonly description: string;
  /** How the fault was made or what came of it (e.g. "nft", "repaired from the mirror"). */
  readonly outcome?: string;
}

export interface NemesisRecord {
  readonly applied: AppliedFault[];
  readonly skipped: { step: number; description: string; reason: string }[];
  /** What a fault showed that the design forbids (e.g. a corrupt WAL accepted): fails the run. */
  readonly anomalies: string[];
  /** Members given up (refused to start from a corrupt WAL without a mirror), by name. */
  readonly lost: string[];
  /** Promotions the nemesis made as the operator to restore the factor (see factorRestored). */
  readonly restores: string[];
  /** The fault in force now (for progress lines), or null. */
  current: string | null;
}

export function newNemesisRecord(): NemesisRecord {
  return { applied: [], skipped: [], anomalies: [], lost: [], restores: [], current: null };
}

export interface NemesisOptions {
  readonly cluster: ChaosCluster;
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
  /** The configured voters (the factor the policy restores; default: founding voters). */
  readonly voters: number;
  /** Seeds the run-time choices of faults (bit positions). */
  readonly seed: number;
}

export async function runNemesis(options: NemesisOptions): Promise<NemesisRecord> {
  const { cluster, plan, nowMs, signal } = options;
  const names = cluster.members.map((m) => m.name);
  const record: NemesisRecord = options.record ?? newNemesisRecord();
  const random = new Prng(options.seed ^ 0x5eed);
  for (const step of plan) {
    const description = describeStep(step, names);
    const skip = (reason: string): void => {
      record.skipped.push({ step: step.index, description, reason });
    };
    if (signal.aborted) break;
    const dueMs = options.startMs + step.atMs;
    if (dueMs > nowMs()) await sleep(dueMs - nowMs(), signal);
    if (signal.aborted) break;
    const lostCount = cluster.members.filter((m) => cluster.isLost(m.index)).length;
    if (step.targets.some((t) => cluster.isLost(t))) {
      skip('a target was given up earlier in the run');
      continue;
    }
    const downing = step.kind === 'membership' ? 0 : step.targets.length;
    if (downing + lostCount > minorityMax(options.voters)) {
      skip(`${lostCount} member(s) given up: no minority left to fault`);
      continue;
    }
    const waitMs = Math.max(0, options.endMs - nowMs());
    if (waitMs === 0) {
      skip('no time left in the fault phase');
      continue;
    }
    if (!(await allUp(cluster, waitMs, signal))) {
      skip('a member was still down');
      continue;
    }
    if (!(await factorRestored(cluster, options.voters, waitMs, signal, record, options.onNote))) {
      skip(`the leader did not count ${options.voters} voters (a replacement still under way)`);
      continue;
    }
    const startMs = nowMs();
    if (startMs + step.durationMs > options.endMs) {
      skip('no time left in the fault phase');
      continue;
    }
    record.current = description;
    options.onNote?.(`nemesis: ${description}`);
    let injected: Injected;
    try {
      injected = await inject(cluster, step, random, record);
    } catch (error) {
      record.current = null;
      skip(`could not inject: ${(error as Error).message}`);
      await cluster.healNetwork().catch(() => {});
      continue;
    }
    if (injected.skipReason !== undefined) {
      record.current = null;
      skip(injected.skipReason);
      continue;
    }
    await sleep(Math.max(0, startMs + step.durationMs - nowMs()), signal);
    await injected.heal();
    record.current = null;
    const targets =
      step.kind === 'membership'
        ? (injected.target ?? '')
        : step.allLinks === true
          ? 'all links'
          : step.targets.map((t) => names[t]).join('+');
    const outcome = injected.outcome();
    if (outcome !== undefined) options.onNote?.(`nemesis: ${step.kind} ${targets}: ${outcome}`);
    record.applied.push({
      step: step.index,
      kind: step.kind,
      startMs,
      endMs: nowMs(),
      target: targets,
      description,
      ...(outcome !== undefined && { outcome }),
    });
  }
  return record;
}

async function allUp(
  cluster: ChaosCluster,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<boolean> {
  const waitMs = Math.min(timeoutMs, NEMESIS_HEALTH_WAIT_MS);
  const alive = cluster.members.filter((m) => !cluster.isLost(m.index));
  const up = await Promise.all(alive.map((m) => cluster.waitUp(m.index, waitMs, signal)));
  return up.every(Boolean);
}

/** The registry as the leader's /status shows it (names and roles), or null without a leader. */
export async function leaderView(
  cluster: ChaosCluster,
): Promise<{ leader: number; registry: readonly { name: string; role: string }[] } | null> {
  const statuses = await Promise.all(cluster.members.map((m) => cluster.fullStatus(m.index)));
  const leader = statuses.findIndex((s) => s?.isLeader === true);
  if (leader < 0) return null;
  return { leader, registry: statuses[leader]!.registry ?? [] };
}

/**
 * Waits (bounded) until the leader's registry counts at least `voters` voters. The policy does
 * not re-promote a member it (or an operator) demoted earlier except to replace a failed voter
 * (cluster/policy.ts rule 2), so after a manual demotion the factor may stay short: then the
 * nemesis acts as the operator and promotes a standby or replica (recorded in `restores`).
 */
async function factorRestored(
  cluster: ChaosCluster,
  voters: number,
  timeoutMs: number,
  signal: AbortSignal,
  record: NemesisRecord,
  onNote?: (text: string) => void,
): Promise<boolean> {
  const deadline = Date.now() + Math.min(timeoutMs, NEMESIS_HEALTH_WAIT_MS);
  let nextPromoteMs = Date.now() + OPERATOR_RESTORE_AFTER_MS;
  for (let round = 0; round < HEALTH_POLL_ROUNDS_MAX && Date.now() < deadline; round++) {
    if (signal.aborted) return false;
    const view = await leaderView(cluster);
    if (view !== null && view.registry.filter((m) => m.role === 'voter').length >= voters) {
      return true;
    }
    if (view !== null && Date.now() >= nextPromoteMs) {
      nextPromoteMs = Date.now() + OPERATOR_RESTORE_AFTER_MS;
      const spare = view.registry
        .filter((m) => (m.role === 'standby' || m.role === 'replica') && isAlive(cluster, m.name))
        .map((m) => m.name)
        .sort()[0];
      if (spare !== undefined) {
        const admin = cluster.members[view.leader]!.admin;
        const answer = await adminRequest<{ reason?: string }>(admin, 'POST', '/member/promote', {
          name: spare,
        }).then(
          (a) => a.reason ?? 'applied',
          (error: Error) => `refused: ${error.message}`,
        );
        record.restores.push(`promote ${spare}: ${answer}`);
        onNote?.(`nemesis (as operator, restoring the factor): promote ${spare}: ${answer}`);
      }
    }
    await sleep(HEALTH_POLL_MS, signal);
  }
  return false;
}

function isAlive(cluster: ChaosCluster, name: string): boolean {
  const m = cluster.members.find((x) => x.name === name);
  return m !== undefined && !cluster.isLost(m.index) && cluster.state(m.index) === 'running';
}

interface Injected {
  readonly heal: () => Promise<void>;
  /** What came of it, once healed. */
  readonly outcome: () => string | undefined;
  /** membership: the member the operation was about. */
  readonly target?: string;
  /** Set when the fault could not be made (recorded as skipped, nothing to heal). */
  readonly skipReason?: string;
}

const noOutcome = (): undefined => undefined;

/** Injects the fault; returns how to heal it. */
async function inject(
  cluster: ChaosCluster,
  step: FaultStep,
  random: Prng,
  record: NemesisRecord,
): Promise<Injected> {
  const all = cluster.members.filter((m) => !cluster.isLost(m.index)).map((m) => m.index);
  const targets = step.targets;
  const others = all.filter((i) => !targets.includes(i));
  const restart = async (): Promise<void> => {
    for (const t of targets) if (cluster.state(t) === 'down') cluster.spawn(t);
  };
  switch (step.kind) {
    case 'kill':
      await Promise.all(targets.map((t) => cluster.kill(t)));
      return { heal: restart, outcome: noOutcome };
    case 'restart':
      await Promise.all(targets.map((t) => cluster.stop(t)));
      return { heal: restart, outcome: noOutcome };
    case 'disk':
      await Promise.all(targets.map((t) => cluster.failNextWalSync(t)));
      return {
        heal: async () => {
          await Promise.all(targets.map((t) => cluster.kill(t)));
          await restart();
        },
        outcome: noOutcome,
      };
    case 'torn': {
      const armed = await Promise.all(
        targets.map((t) => cluster.crashStorageAfter(t, step.tornAfterBytes ?? 1)),
      );
      if (!armed.every(Boolean)) {
        // Some may be armed: a restart disarms them (the fault file system lives in memory).
        await Promise.all(targets.map((t) => cluster.kill(t)));
        await restart();
        return {
          heal: async () => {},
          outcome: noOutcome,
          skipReason: 'a target refused the torn-write fault',
        };
      }
      let stopped = 0;
      const from = targets.map((t) => cluster.logBytes(t));
      return {
        heal: async () => {
          stopped = targets.filter((t, i) =>
            cluster.logMentions(t, STORAGE_STOP_LOG, from[i]),
          ).length;
          await Promise.all(targets.map((t) => cluster.kill(t)));
          await restart();
        },
        outcome: () => `${stopped}/${targets.length} stopped on the torn write, restarted`,
      };
    }
    case 'bitflip':
      return injectBitflip(cluster, targets[0]!, random, record);
    case 'pause':
      for (const t of targets) cluster.pause(t);
      return {
        heal: async () => {
          for (const t of targets) cluster.resume(t);
        },
        outcome: noOutcome,
      };
    case 'partition': {
      await cluster.dropLinks(targets, others, 1);
      if (step.oneWay !== true) await cluster.dropLinks(others, targets, 1);
      return { heal: () => cluster.healNetwork(), outcome: () => netHow(cluster) };
    }
    case 'lossy': {
      const rate = step.dropRate ?? 0;
      if (step.allLinks === true) await cluster.dropLinks(all, all, rate);
      else {
        await cluster.dropLinks(targets, others, rate);
        await cluster.dropLinks(others, targets, rate);
      }
      return { heal: () => cluster.healNetwork(), outcome: () => netHow(cluster) };
    }
    case 'slow': {
      const shape = {
        delayMs: step.delayMs ?? 0,
        jitterMs: step.jitterMs ?? 0,
        lossRate: step.dropRate ?? 0,
      };
      let how: string;
      if (step.allLinks === true) how = await cluster.slowLinks(all, all, shape);
      else {
        how = await cluster.slowLinks(targets, others, shape);
        await cluster.slowLinks(others, targets, shape);
      }
      return { heal: () => cluster.healNetwork(), outcome: () => how };
    }
    case 'membership':
      return injectMembership(cluster, step);
  }
}

/** The log line of a member that stopped on a storage failure (cli/node.ts). */
export const STORAGE_STOP_LOG = 'member stopped on a storage failure';
/** The refusal of a member whose WAL is corrupt (storage/wal/log-builder.ts). */
export const WAL_CORRUPT_LOG = 'WAL corrupt';
/** A member that recovered past damage in every WAL copy (storage/raft-persistence.ts). */
export const WAL_RECOVERED_LOG = 'WAL recovered past';
/** …having fetched committed entries from its peers (protocol-aware recovery). */
export const WAL_FETCHED_LOG = 'fetched from peers';

function netHow(cluster: ChaosCluster): string {
  return cluster.net === null ? 'transport rules' : 'kernel (nftables)';
}

async function injectBitflip(
  cluster: ChaosCluster,
  target: number,
  random: Prng,
  record: NemesisRecord,
): Promise<Injected> {
  const m = cluster.members[target]!;
  await cluster.kill(target);
  const flip = await flipWalBit(m.dataDir, random);
  const logFrom = cluster.logBytes(target);
  cluster.spawn(target);
  if (flip === null) {
    return { heal: async () => {}, outcome: noOutcome, skipReason: 'no WAL batch to damage yet' };
  }
  const where = `${flip.file.slice(m.dataDir.length + 1)} byte ${flip.offset} bit ${flip.bit}`;
  let outcome: string;
  if (m.mirrorDir !== null) {
    const up = await cluster.waitUp(target, BITFLIP_VERDICT_WAIT_MS);
    const now = await byteAt(flip);
    if (!up) {
      outcome = `did not start with a mirror (${where})`;
      record.anomalies.push(`bitflip ${m.name}: ${outcome}`);
    } else if (now !== null && now !== flip.before) {
      outcome = `started without repairing ${where} from the mirror`;
      record.anomalies.push(`bitflip ${m.name}: ${outcome}`);
    } else outcome = `${where}: repaired from the mirror`;
  } else {
    // Without a mirror, three honest outcomes (storage/wal/wal.ts "open"): the damaged committed
    // entries are fetched from peers (protocol-aware recovery), or the damage is provably
    // harmless (superseded hard state), or the member refuses to start naming the corruption.
    const started = await cluster.waitUp(target, BITFLIP_VERDICT_WAIT_MS);
    const exitCode = started ? null : await cluster.waitExit(target, EXIT_WAIT_MS);
    const recovered = cluster.logMentions(target, WAL_RECOVERED_LOG, logFrom);
    if (started && recovered) {
      outcome = cluster.logMentions(target, WAL_FETCHED_LOG, logFrom)
        ? `${where}: committed entries fetched from peers (no mirror)`
        : `${where}: damage provably harmless, stepped over (no mirror)`;
    } else if (
      exitCode !== null &&
      exitCode !== 0 &&
      cluster.logMentions(target, WAL_CORRUPT_LOG, logFrom)
    ) {
      cluster.markLost(target);
      record.lost.push(m.name);
      outcome = `${where}: refused to start (WAL corrupt, no mirror): given up for the rest of the run`;
    } else {
      outcome = started
        ? `started from a corrupt WAL without saying how it recovered (${where})`
        : exitCode === null
          ? `neither started nor exited (${where})`
          : `exited ${exitCode} without naming the corruption (${where})`;
      record.anomalies.push(`bitflip ${m.name}: ${outcome}`);
    }
  }
  return { heal: async () => {}, outcome: () => outcome };
}

/** Sends a manual membership operation to the leader; skipped with the policy's refusal. */
async function injectMembership(cluster: ChaosCluster, step: FaultStep): Promise<Injected> {
  const view = await leaderView(cluster);
  if (view === null) return { heal: async () => {}, outcome: noOutcome, skipReason: 'no leader' };
  const leaderName = cluster.members[view.leader]!.name;
  const alive = new Set(cluster.members.filter((m) => !cluster.isLost(m.index)).map((m) => m.name));
  const op = step.op ?? 'promote';
  const candidates = view.registry
    .filter((r) => alive.has(r.name))
    .filter((r) =>
      op === 'promote'
        ? r.role === 'standby' || r.role === 'replica'
        : r.role === 'voter' && r.name !== leaderName,
    )
    .map((r) => r.name)
    .sort();
  if (candidates.length === 0) {
    return { heal: async () => {}, outcome: noOutcome, skipReason: `no candidate to ${op}` };
  }
  const name = candidates[(step.rank ?? 0) % candidates.length]!;
  try {
    const answer = await adminRequest<{ reason?: string }>(
      cluster.members[view.leader]!.admin,
      'POST',
      `/member/${op}`,
      { name },
    );
    return { heal: async () => {}, outcome: () => answer.reason ?? 'applied', target: name };
  } catch (error) {
    return {
      heal: async () => {},
      outcome: noOutcome,
      skipReason: `${op} ${name} refused: ${(error as Error).message}`,
    };
  }
}

/** Undoes whatever a stopped nemesis may have left: resumes, restarts, heals links. */
export async function healAll(cluster: ChaosCluster): Promise<void> {
  const alive = cluster.members.filter((m) => !cluster.isLost(m.index));
  for (const m of alive) cluster.resume(m.index);
  for (const m of alive) if (cluster.state(m.index) === 'down') cluster.spawn(m.index);
  await Promise.all(alive.map((m) => cluster.waitUp(m.index, NEMESIS_HEALTH_WAIT_MS)));
  await cluster.healNetwork();
}
