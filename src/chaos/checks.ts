/**
 * Checks beside linearizability, over a history, a final state and what watchers and lease
 * holders observed. Each returns a verdict, counts and a bounded list of problems that name
 * operations and times, so a report can show them. All pure.
 */
import { CheckInputError } from './errors.js';
import type { CasValue, Operation, OpFunction, Value } from './history.js';
import { describeOperation, fmtValue, pushTo } from './history.js';

/** Each check keeps at most this many problems (the counts stay exact). */
export const PROBLEMS_SHOWN_MAX = 50;

export type CheckVerdict = 'ok' | 'violation' | 'unknown';

function isEffect(op: Operation): boolean {
  return op.f !== 'read' && op.status !== 'fail';
}

function effectValue(op: Operation): Value {
  return op.f === 'write' ? (op.input as Value) : (op.input as CasValue)[1];
}

// ---------------------------------------------------------------------------------------------
// (1) Lost acknowledged writes

export interface LostWrite {
  readonly key: string;
  /** What the final read returned (null = absent). */
  readonly finalValue: Value;
  /** The acknowledged writes of which one (at least) had to remain visible. */
  readonly frontier: readonly Operation[];
  /** Values the final read could legitimately have returned. */
  readonly allowed: readonly Value[];
  readonly text: string;
}

export interface LostWritesResult {
  readonly verdict: CheckVerdict;
  readonly keysChecked: number;
  readonly acknowledgedWrites: number;
  readonly lost: readonly LostWrite[];
  /** Keys with acknowledged writes but no final read: not checked (verdict `unknown`). */
  readonly keysUnread: readonly string[];
}

/**
 * Lost acknowledged writes, for a register per key. `finalValues` holds, for each key, what a
 * read returned after every client stopped and the cluster healed (null = key absent).
 *
 * Definition. Call an `ok` write or `ok` cas an acknowledged write. An operation X (write or cas,
 * `ok` or `info`) is superseded when some acknowledged write W on the same key was invoked after
 * X completed (X.completeMs < W.invokeMs): every linearization puts W after X, so X cannot be
 * the key's last effect. (An `info` operation completes at infinity, so is never superseded.)
 * The frontier of a key is its acknowledged writes that are not superseded. If the frontier is
 * not empty, the final value must be the value written by some non-superseded write or cas;
 * otherwise every frontier write was lost (overwritten by nothing that could come after it, or
 * rolled back). This is the final read's own linearizability condition, stated so that the
 * report can name the lost writes; appending the final reads to the history and running the
 * linearizability checker gives the complete check.
 */
export function checkLostWrites(
  ops: readonly Operation[],
  finalValues: ReadonlyMap<string, Value>,
): LostWritesResult {
  const byKey = new Map<string, Operation[]>();
  for (const op of ops) {
    if (!isEffect(op)) continue;
    pushTo(byKey, op.key, op);
  }
  const lost: LostWrite[] = [];
  const keysUnread: string[] = [];
  let acknowledgedWrites = 0;
  let keysChecked = 0;
  for (const key of [...byKey.keys()].sort()) {
    const effects = byKey.get(key)!;
    const acked = effects.filter((op) => op.status === 'ok');
    acknowledgedWrites += acked.length;
    if (acked.length === 0) continue;
    // The latest invocation among acknowledged writes decides supersession: X is superseded
    // iff X.completeMs < max(W.invokeMs) over acknowledged W.
    let lastAckedInvokeMs = Number.NEGATIVE_INFINITY;
    for (const w of acked) lastAckedInvokeMs = Math.max(lastAckedInvokeMs, w.invokeMs);
    const candidates = effects.filter((x) => !(x.completeMs < lastAckedInvokeMs));
    const frontier = candidates.filter((x) => x.status === 'ok');
    if (!finalValues.has(key)) {
      keysUnread.push(key);
      continue;
    }
    keysChecked++;
    const finalValue = finalValues.get(key)!;
    const allowed = [...new Set(candidates.map(effectValue))];
    if (allowed.includes(finalValue)) continue;
    const text =
      `key ${JSON.stringify(key)}: final value ${fmtValue(finalValue)}, but it must be one of ` +
      `${allowed.map(fmtValue).join(', ')}; lost acknowledged write(s):\n` +
      frontier.map((op) => `  ${describeOperation(op)}`).join('\n');
    if (lost.length < PROBLEMS_SHOWN_MAX) lost.push({ key, finalValue, frontier, allowed, text });
  }
  const verdict: CheckVerdict =
    lost.length > 0 ? 'violation' : keysUnread.length > 0 ? 'unknown' : 'ok';
  return { verdict, keysChecked, acknowledgedWrites, lost, keysUnread };
}

// ---------------------------------------------------------------------------------------------
// (2) Watches

export interface WatchEvent {
  readonly revision: number;
  readonly key: string;
  readonly type: 'put' | 'delete';
  /** The value of a put, when the watcher recorded it. */
  readonly value?: Value;
}

export interface WatcherLog {
  readonly watcher: string;
  /** The keys the watch covers. */
  readonly keys: readonly string[];
  /** The watch's start revision: it must deliver every change at or after it. */
  readonly startRevision: number;
  /** Events in delivery order (across reconnections of the same logical watcher). */
  readonly events: readonly WatchEvent[];
  /**
   * The revision the watcher is known to have caught up to (a progress notification or the
   * header revision of its last response). Defaults to the revision of its last event.
   */
  readonly progressRevision?: number;
}

export type WatchProblemKind =
  | 'out-of-order'
  | 'duplicate'
  | 'gap'
  | 'foreign-key'
  | 'before-start'
  | 'mismatch'
  | 'phantom'
  | 'disagreement';

export interface WatchProblem {
  readonly watcher: string;
  readonly kind: WatchProblemKind;
  readonly revision: number;
  readonly key: string;
  readonly message: string;
}

export interface WatchResult {
  readonly verdict: CheckVerdict;
  readonly watchersChecked: number;
  readonly eventsChecked: number;
  readonly problemsCount: number;
  readonly problems: readonly WatchProblem[];
}

/**
 * Every watcher saw every revision of its keys, in order, with no gap and no duplicate, and
 * each event matches the write history.
 *
 * The write history gives the revision of each acknowledged write (`revision` of `ok` write and
 * cas operations). For a watcher over keys K from `startRevision` up to its progress revision P:
 * - events come in non-decreasing revision order, and no (revision, key) twice;
 * - each event is for a key in K, at a revision ≥ startRevision;
 * - gap: every acknowledged write on K with a revision in [startRevision, P] was delivered;
 * - an event at an acknowledged write's revision is a put of that key (and value, if recorded);
 * - an event at any other revision must be explained: a put by an `info` write or cas, or an
 *   acknowledged one whose revision was not recorded, of that key (and value), each such write
 *   explaining one revision at most; a delete is accepted (lease expiry and revocation are not
 *   in the register history);
 * - watchers that saw the same (revision, key) agree on its type and value.
 */
export function checkWatches(
  ops: readonly Operation[],
  watchers: readonly WatcherLog[],
): WatchResult {
  const writeAt = new Map<number, Operation>();
  /** key → ops that may explain an event whose revision is not known. */
  const unrevisioned = new Map<string, Operation[]>();
  for (const op of ops) {
    if (!isEffect(op)) continue;
    if (op.status === 'ok' && op.revision !== undefined) {
      const other = writeAt.get(op.revision);
      if (other !== undefined) {
        throw new CheckInputError(
          'CHECK_INPUT_INVALID',
          `revision ${op.revision} is recorded for two writes: #${other.id} and #${op.id}`,
        );
      }
      writeAt.set(op.revision, op);
    } else {
      pushTo(unrevisioned, op.key, op);
    }
  }
  const revisionsByKey = new Map<string, number[]>();
  for (const [revision, op] of writeAt) {
    pushTo(revisionsByKey, op.key, revision);
  }

  const problems: WatchProblem[] = [];
  let problemsCount = 0;
  let eventsChecked = 0;
  const report = (p: WatchProblem): void => {
    problemsCount++;
    if (problems.length < PROBLEMS_SHOWN_MAX) problems.push(p);
  };
  const seenGlobally = new Map<string, { watcher: string; event: WatchEvent }>();
  /** Unknown-outcome (or unrevisioned) writes already matched to an event's revision. */
  const claimed = new Set<Operation>();
  const explainedAt = new Set<number>();

  for (const log of watchers) {
    if (!Number.isSafeInteger(log.startRevision) || log.startRevision < 1) {
      throw new CheckInputError('CHECK_INPUT_INVALID', `watcher ${log.watcher}: bad startRevision`);
    }
    const keys = new Set(log.keys);
    const delivered = new Set<string>();
    let lastRevision = 0;
    for (const event of log.events) {
      eventsChecked++;
      const at = { watcher: log.watcher, revision: event.revision, key: event.key };
      const id = `${event.revision}\u0000${event.key}`;
      if (event.revision < lastRevision) {
        report({
          ...at,
          kind: 'out-of-order',
          message: `revision ${event.revision} after ${lastRevision}`,
        });
      }
      lastRevision = Math.max(lastRevision, event.revision);
      if (delivered.has(id)) {
        report({ ...at, kind: 'duplicate', message: `delivered twice` });
        continue;
      }
      delivered.add(id);
      if (!keys.has(event.key)) report({ ...at, kind: 'foreign-key', message: 'key not watched' });
      if (event.revision < log.startRevision) {
        report({
          ...at,
          kind: 'before-start',
          message: `before start revision ${log.startRevision}`,
        });
      }
      const mismatch = matchEvent(event, writeAt, unrevisioned, claimed, explainedAt);
      if (mismatch !== undefined) report({ ...at, ...mismatch });
      const earlier = seenGlobally.get(id);
      if (earlier === undefined) seenGlobally.set(id, { watcher: log.watcher, event });
      else if (earlier.event.type !== event.type || earlier.event.value !== event.value) {
        report({
          ...at,
          kind: 'disagreement',
          message: `watcher ${earlier.watcher} saw ${fmtEvent(earlier.event)}, this one ${fmtEvent(event)}`,
        });
      }
    }
    const upTo = log.progressRevision ?? lastRevision;
    for (const key of keys) {
      for (const revision of revisionsByKey.get(key) ?? []) {
        if (revision < log.startRevision || revision > upTo) continue;
        if (delivered.has(`${revision}\u0000${key}`)) continue;
        const op = writeAt.get(revision)!;
        report({
          watcher: log.watcher,
          kind: 'gap',
          revision,
          key,
          message: `never delivered, though the watcher reached revision ${upTo}: ${describeOperation(op)}`,
        });
      }
    }
  }
  return {
    verdict: problemsCount > 0 ? 'violation' : 'ok',
    watchersChecked: watchers.length,
    eventsChecked,
    problemsCount,
    problems,
  };
}

function matchEvent(
  event: WatchEvent,
  writeAt: ReadonlyMap<number, Operation>,
  unrevisioned: ReadonlyMap<string, readonly Operation[]>,
  claimed: Set<Operation>,
  explainedAt: Set<number>,
): { kind: WatchProblemKind; message: string } | undefined {
  const op = writeAt.get(event.revision);
  if (op !== undefined) {
    const value = effectValue(op);
    if (
      event.type !== 'put' ||
      op.key !== event.key ||
      (event.value !== undefined && event.value !== value)
    ) {
      return {
        kind: 'mismatch',
        message: `event ${fmtEvent(event)} but revision ${event.revision} is ${describeOperation(op)}`,
      };
    }
    return undefined;
  }
  if (event.type === 'delete') return undefined;
  if (explainedAt.has(event.revision)) return undefined; // the same commit, seen again
  // An unknown-outcome write commits at most once: a recorded value claims its writer.
  const writer = (unrevisioned.get(event.key) ?? []).find(
    (x) => !claimed.has(x) && (event.value === undefined || effectValue(x) === event.value),
  );
  if (writer === undefined) {
    return { kind: 'phantom', message: `event ${fmtEvent(event)} matches no write in the history` };
  }
  if (event.value !== undefined) claimed.add(writer);
  explainedAt.add(event.revision);
  return undefined;
}

function fmtEvent(e: WatchEvent): string {
  const value = e.value === undefined ? '' : ` ${fmtValue(e.value)}`;
  return `${e.type} ${e.key}${value} @${e.revision}`;
}

// ---------------------------------------------------------------------------------------------
// (3) Leases

export interface LeaseObservation {
  readonly key: string;
  readonly leaseId: string | number;
  readonly ttlMs: number;
  /** When the grant was invoked (the lease began at or after this). */
  readonly grantedMs: number;
  /** Send times of keep-alives that were acknowledged with a positive TTL. */
  readonly keepAliveMs: readonly number[];
  /** Completion time of the first read that found the key missing; absent if never missing. */
  readonly missingObservedMs?: number;
}

export interface LeaseProblem {
  readonly key: string;
  readonly leaseId: string | number;
  /** The earliest time the lease could legitimately expire. */
  readonly expiresNotBeforeMs: number;
  readonly missingObservedMs: number;
  readonly message: string;
}

export interface LeaseResult {
  readonly verdict: CheckVerdict;
  readonly leasesChecked: number;
  /** Leases whose key was never observed missing (nothing to check about early expiry). */
  readonly neverMissing: number;
  readonly problems: readonly LeaseProblem[];
}

/**
 * Lease-attached keys vanish only after their TTL. A lease granted (invoked) at g with TTL t,
 * refreshed by keep-alives sent at k₁ < k₂ < … and acknowledged, lives at least until
 * max(g, kᵢ) + t over the keep-alives sent before the key was found missing: the server
 * started (or restarted) the TTL no earlier than the request was sent, and a new leader only
 * extends leases (etcd renews them on election). A read that completed at m and found the key
 * missing shows the key vanished at or before m; if m < max(g, kᵢ) + t − toleranceMs, the key
 * vanished while its lease was guaranteed alive. `toleranceMs` absorbs timer granularity.
 */
export function checkLeases(
  observations: readonly LeaseObservation[],
  options: { readonly toleranceMs?: number } = {},
): LeaseResult {
  const toleranceMs = options.toleranceMs ?? 0;
  if (!(toleranceMs >= 0))
    throw new CheckInputError('CHECK_INPUT_INVALID', 'toleranceMs must be ≥ 0');
  const problems: LeaseProblem[] = [];
  let neverMissing = 0;
  for (const o of observations) {
    if (!(o.ttlMs > 0) || !Number.isFinite(o.grantedMs)) {
      throw new CheckInputError(
        'CHECK_INPUT_INVALID',
        `lease ${o.leaseId}: ttlMs and grantedMs required`,
      );
    }
    if (o.missingObservedMs === undefined) {
      neverMissing++;
      continue;
    }
    const missingMs = o.missingObservedMs;
    let refreshedMs = o.grantedMs;
    for (const k of o.keepAliveMs) if (k <= missingMs) refreshedMs = Math.max(refreshedMs, k);
    const expiresNotBeforeMs = refreshedMs + o.ttlMs;
    if (missingMs < expiresNotBeforeMs - toleranceMs && problems.length < PROBLEMS_SHOWN_MAX) {
      problems.push({
        key: o.key,
        leaseId: o.leaseId,
        expiresNotBeforeMs,
        missingObservedMs: missingMs,
        message:
          `key ${JSON.stringify(o.key)} of lease ${o.leaseId} (ttl ${o.ttlMs} ms) was missing at ` +
          `${missingMs} ms, ${expiresNotBeforeMs - missingMs} ms before the lease could expire ` +
          `(last refresh sent at ${refreshedMs} ms)`,
      });
    }
  }
  return {
    verdict: problems.length > 0 ? 'violation' : 'ok',
    leasesChecked: observations.length,
    neverMissing,
    problems,
  };
}

// ---------------------------------------------------------------------------------------------
// (4) Availability

export interface Window {
  readonly fromMs: number;
  readonly toMs: number;
  readonly durationMs: number;
}

export interface AvailabilityResult {
  readonly opsTotal: number;
  readonly opsOk: number;
  readonly opsFail: number;
  readonly opsInfo: number;
  /** opsOk / opsTotal (1 for an empty history). */
  readonly okShare: number;
  readonly byFunction: Readonly<
    Record<OpFunction, { readonly total: number; readonly ok: number }>
  >;
  /** The longest interval of [fromMs, toMs] in which no write or cas completed `ok`. */
  readonly longestWriteGap: Window;
  readonly fromMs: number;
  readonly toMs: number;
}

/**
 * Share of operations that succeeded, and the longest window with no successful write (a write
 * or cas succeeds at its `ok` completion). The window is measured over [fromMs, toMs], by
 * default from the first invocation to the last recorded event.
 */
export function checkAvailability(
  ops: readonly Operation[],
  options: { readonly fromMs?: number; readonly toMs?: number } = {},
): AvailabilityResult {
  const byFunction = {
    read: { total: 0, ok: 0 },
    write: { total: 0, ok: 0 },
    cas: { total: 0, ok: 0 },
  };
  let opsOk = 0;
  let opsFail = 0;
  let firstMs = Number.POSITIVE_INFINITY;
  let lastMs = Number.NEGATIVE_INFINITY;
  const writeOkMs: number[] = [];
  for (const op of ops) {
    byFunction[op.f].total++;
    firstMs = Math.min(firstMs, op.invokeMs);
    lastMs = Math.max(lastMs, op.invokeMs);
    if (Number.isFinite(op.completeMs)) lastMs = Math.max(lastMs, op.completeMs);
    if (op.status === 'ok') {
      opsOk++;
      byFunction[op.f].ok++;
      if (op.f !== 'read') writeOkMs.push(op.completeMs);
    } else if (op.status === 'fail') opsFail++;
  }
  const fromMs = options.fromMs ?? (ops.length > 0 ? firstMs : 0);
  const toMs = options.toMs ?? (ops.length > 0 ? lastMs : 0);
  if (!(toMs >= fromMs))
    throw new CheckInputError('CHECK_INPUT_INVALID', 'availability: toMs < fromMs');
  const marks = writeOkMs.filter((t) => t >= fromMs && t <= toMs).sort((a, b) => a - b);
  let gap: Window = { fromMs, toMs: fromMs, durationMs: 0 };
  let previousMs = fromMs;
  for (const t of [...marks, toMs]) {
    if (t - previousMs > gap.durationMs)
      gap = { fromMs: previousMs, toMs: t, durationMs: t - previousMs };
    previousMs = t;
  }
  return {
    opsTotal: ops.length,
    opsOk,
    opsFail,
    opsInfo: ops.length - opsOk - opsFail,
    okShare: ops.length === 0 ? 1 : opsOk / ops.length,
    byFunction,
    longestWriteGap: gap,
    fromMs,
    toMs,
  };
}
