/**
 * The nemesis's schedule, planned up front from the seed (pure): the same seed, cluster size,
 * duration and fault kinds give the same list of faults, so a failing run can be replayed and
 * a fault schedule can be reviewed before it runs. Member indices, never "the leader": who
 * leads is only known at run time, and the schedule must not depend on it.
 *
 * Faults never overlap: each is healed before the next begins, with a quiet gap between them,
 * and each targets a minority of the voters (at most ⌊(n−1)/2⌋ members killed, paused, cut
 * off or slowed), so some majority always survives (TigerBeetle's VOPR rule: inject only what
 * the design can survive, or every alarm is false). The executor (nemesis.ts) may start a step
 * late or skip it — it waits for a restarted member to answer before the next fault — and
 * records what it really did.
 *
 * With standbys the targets are drawn from every member (voters and standbys: who votes changes
 * at run time), still at most ⌊(voters−1)/2⌋ of them, so at most that many voters are ever down.
 */
import { assert } from '../util/assert.js';
import { Prng } from '../util/prng.js';

export const FAULT_KINDS = [
  'kill',
  'pause',
  'partition',
  'slow',
  'lossy',
  'restart',
  'disk',
  'torn',
  'bitflip',
  'membership',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** No fault during the first part of a run: the clients' first operations see a healthy cluster. */
export const PLAN_WARMUP_MS = 1_000;
/** How long a fault is held, and the quiet gap after it: uniform in [min, max]. */
export const PLAN_FAULT_MS_MIN = 1_500;
export const PLAN_FAULT_MS_MAX = 5_000;
export const PLAN_QUIET_MS_MIN = 1_000;
export const PLAN_QUIET_MS_MAX = 3_000;
/** A slow link waits this long per message, and loses this share of them. */
export const PLAN_SLOW_DELAY_MS_MIN = 20;
export const PLAN_SLOW_DELAY_MS_MAX = 250;
export const PLAN_SLOW_DROP_RATE_MAX = 0.3;
/** Jitter of a slow link: this share of its delay at most. */
export const PLAN_SLOW_JITTER_SHARE_MAX = 0.5;
/** A lossy link loses a share of its packets in [min, max]. */
export const PLAN_LOSSY_RATE_MIN = 0.05;
export const PLAN_LOSSY_RATE_MAX = 0.4;
/** A torn WAL write lands after at most this many more bytes are written (a small batch). */
export const PLAN_TORN_AFTER_BYTES_MAX = 4096;
/** Manual membership operations (tandem member promote|demote|standby). */
export const MEMBERSHIP_OPS = ['promote', 'demote', 'standby'] as const;
export type MembershipOp = (typeof MEMBERSHIP_OPS)[number];
/** Steps in one plan (a 24 h run at the shortest spacing stays under it). */
export const PLAN_STEPS_MAX = 100_000;

assert(PLAN_FAULT_MS_MIN <= PLAN_FAULT_MS_MAX && PLAN_QUIET_MS_MIN <= PLAN_QUIET_MS_MAX);
assert(PLAN_SLOW_DELAY_MS_MIN <= PLAN_SLOW_DELAY_MS_MAX && PLAN_SLOW_DROP_RATE_MAX < 1);

export interface FaultStep {
  /** Position in the plan. */
  readonly index: number;
  readonly kind: FaultKind;
  /** When the fault starts, from the start of the run. */
  readonly atMs: number;
  /** How long it is held before healing (kill: time down; restart: pause before starting). */
  readonly durationMs: number;
  /** Member indices: a minority (slow with `allLinks`: the one whose links are slowed, unused). */
  readonly targets: readonly number[];
  /** slow: every link of the cluster instead of the links of `targets`. */
  readonly allLinks?: boolean;
  readonly delayMs?: number;
  /** slow: jitter of the delay (netem; the transport's rules have none). */
  readonly jitterMs?: number;
  readonly dropRate?: number;
  /** partition: only what `targets` send to the others is dropped (else both ways). */
  readonly oneWay?: boolean;
  /** torn: the WAL write that crosses this many more bytes lands only a prefix. */
  readonly tornAfterBytes?: number;
  /** membership: the operation, and which candidate (rank among them, wrapped at run time). */
  readonly op?: MembershipOp;
  readonly rank?: number;
}

export interface PlanOptions {
  readonly seed: number;
  readonly voters: number;
  /** Every member, standbys included (default: voters). */
  readonly members?: number;
  /** The whole fault phase; no fault lasts past it. */
  readonly durationMs: number;
  readonly kinds: readonly FaultKind[];
}

/** The largest number of members that may be down at once with `voters` voters. */
export function minorityMax(voters: number): number {
  return Math.floor((voters - 1) / 2);
}

export function planFaults(options: PlanOptions): FaultStep[] {
  const { voters, durationMs } = options;
  const members = options.members ?? voters;
  assert(Number.isSafeInteger(voters) && voters >= 1, 'voters');
  assert(Number.isSafeInteger(members) && members >= voters, 'members');
  // Demoting a voter is only survivable with a spare to restore the factor.
  const kinds = options.kinds.filter((k) => k !== 'membership' || members > voters);
  assert(Number.isSafeInteger(durationMs) && durationMs >= 0, 'durationMs');
  const steps: FaultStep[] = [];
  // A single member has no minority to fault: nothing survives a fault of it.
  if (kinds.length === 0 || minorityMax(voters) === 0) return steps;
  const random = new Prng(options.seed);
  let atMs = PLAN_WARMUP_MS;
  while (steps.length < PLAN_STEPS_MAX) {
    const kind = random.pick(kinds);
    const faultMs = random.range(PLAN_FAULT_MS_MIN, PLAN_FAULT_MS_MAX);
    const quietMs = random.range(PLAN_QUIET_MS_MIN, PLAN_QUIET_MS_MAX);
    const targets = pickMinority(random, voters, members);
    const heldMs = kind === 'restart' ? random.range(0, 1000) : faultMs;
    if (atMs + heldMs > durationMs) break;
    const step: { -readonly [K in keyof FaultStep]: FaultStep[K] } = {
      index: steps.length,
      kind,
      atMs,
      durationMs: heldMs,
      targets,
    };
    if (kind === 'slow') {
      step.allLinks = random.chance(0.5);
      step.delayMs = random.range(PLAN_SLOW_DELAY_MS_MIN, PLAN_SLOW_DELAY_MS_MAX);
      step.dropRate = Math.round(random.float() * PLAN_SLOW_DROP_RATE_MAX * 100) / 100;
      step.jitterMs = Math.round(step.delayMs * random.float() * PLAN_SLOW_JITTER_SHARE_MAX);
    }
    if (kind === 'lossy') {
      step.allLinks = random.chance(0.5);
      const rate =
        PLAN_LOSSY_RATE_MIN + random.float() * (PLAN_LOSSY_RATE_MAX - PLAN_LOSSY_RATE_MIN);
      step.dropRate = Math.round(rate * 100) / 100;
    }
    if (kind === 'partition') step.oneWay = random.chance(0.5);
    if (kind === 'torn') step.tornAfterBytes = random.range(1, PLAN_TORN_AFTER_BYTES_MAX);
    if (kind === 'membership') {
      step.op = random.pick(MEMBERSHIP_OPS);
      step.rank = random.int(members);
    }
    steps.push(step);
    atMs += heldMs + quietMs;
  }
  return steps;
}

/** 1..minorityMax(voters) distinct member indices among `members`, sorted. */
function pickMinority(random: Prng, voters: number, members: number): number[] {
  const count = random.range(1, minorityMax(voters));
  const all = Array.from({ length: members }, (_, i) => i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, count).sort((a, b) => a - b);
}

/** Parses `kill,pause,partition`; throws naming the unknown kind. */
export function parseFaultKinds(text: string): FaultKind[] {
  const kinds: FaultKind[] = [];
  for (const raw of text.split(',')) {
    const kind = raw.trim();
    if (kind === '' || kind === 'none') continue;
    if (!(FAULT_KINDS as readonly string[]).includes(kind)) {
      throw new Error(`unknown fault kind '${kind}' (known: ${FAULT_KINDS.join(', ')})`);
    }
    if (!kinds.includes(kind as FaultKind)) kinds.push(kind as FaultKind);
  }
  return kinds;
}

/** "kill n2 for 3.2 s at 4.1 s", for logs and the progress line. */
export function describeStep(step: FaultStep, names: readonly string[]): string {
  const who = step.allLinks === true ? 'all links' : step.targets.map((t) => names[t]).join('+');
  const loss = `${Math.round((step.dropRate ?? 0) * 100)}% loss`;
  let how = '';
  if (step.kind === 'slow') how = ` (+${step.delayMs}±${step.jitterMs ?? 0} ms, ${loss})`;
  if (step.kind === 'lossy') how = ` (${loss})`;
  if (step.kind === 'partition')
    how = step.oneWay === true ? ' (one way: its sends dropped)' : ' (both ways)';
  if (step.kind === 'torn') how = ` (after ${step.tornAfterBytes} bytes)`;
  if (step.kind === 'membership') return `membership ${step.op} (candidate ${step.rank})`;
  return `${step.kind} ${who}${how} for ${(step.durationMs / 1000).toFixed(1)} s`;
}
