/**
 * Histories of client operations, as Jepsen records them: one event per line (JSONL), either an
 * invocation or its completion.
 *
 *   {"process":3,"type":"invoke","f":"cas","key":"k1","value":[1,2],"timeMs":1042.5}
 *   {"process":3,"type":"ok","f":"cas","key":"k1","value":[1,2],"timeMs":1047.1,"revision":88}
 *
 * - `type`: `invoke`, then one of `ok` (took effect, result known), `fail` (certainly did not take
 *   effect: a cas whose compare failed, a request refused before proposing) or `info` (unknown
 *   outcome: timeout, connection lost — it may have taken effect at any time after the invocation,
 *   or never).
 * - `value`: read → the value read on `ok` (`null` = key absent; `null` on the invocation);
 *   write → the value written; cas → `[expected, new]` (`expected: null` = "key absent").
 *   Written values are never `null` (deletes are not part of the register model).
 * - `timeMs`: a monotonic clock (performance.now()), in milliseconds, shared by all processes of
 *   one recorder. Real-time order between two operations comes only from these times.
 * - `index` (optional): the event's position in the original history; `revision` (optional): the
 *   etcd header revision of an `ok` write or cas (the watch check matches it); `error`
 *   (optional): why a `fail` or `info` ended.
 *
 * Jepsen's rule: a process whose operation ended in `info` may still have that operation in
 * flight, so it never invokes again; the client continues under a fresh process id. Pairing
 * enforces it, since otherwise two operations of "one" process could overlap in ways the
 * history does not show.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { HistoryError } from './errors.js';
import { HISTORY_EVENTS_MAX, HISTORY_LINE_BYTES_MAX } from './limits.js';

export type EventType = 'invoke' | 'ok' | 'fail' | 'info';
export type OpFunction = 'read' | 'write' | 'cas';
/** A register value; `null` means "absent" (never written). Compared with `===`. */
export type Value = string | number | null;
export type CasValue = readonly [expected: Value, next: Value];
export type OpStatus = 'ok' | 'fail' | 'info';

export interface HistoryEvent {
  readonly process: number;
  readonly type: EventType;
  readonly f: OpFunction;
  readonly key: string;
  readonly value: Value | CasValue;
  readonly timeMs: number;
  readonly index?: number;
  readonly revision?: number;
  readonly error?: string;
}

/** An invocation paired with its completion. */
export interface Operation {
  /** Position in the list returned by `pairOperations` (invocation order). */
  readonly id: number;
  readonly process: number;
  readonly f: OpFunction;
  readonly key: string;
  /** read: null; write: the value; cas: [expected, new]. */
  readonly input: Value | CasValue;
  /** The value an `ok` read returned; undefined otherwise. */
  readonly output: Value | undefined;
  readonly invokeMs: number;
  /** Infinity when the outcome is unknown (`info`, or no completion recorded). */
  readonly completeMs: number;
  readonly status: OpStatus;
  readonly revision?: number;
  readonly error?: string;
}

const EVENT_TYPES: ReadonlySet<string> = new Set(['invoke', 'ok', 'fail', 'info']);
const OP_FUNCTIONS: ReadonlySet<string> = new Set(['read', 'write', 'cas']);
const EVENT_FIELDS: ReadonlySet<string> = new Set([
  'process',
  'type',
  'f',
  'key',
  'value',
  'timeMs',
  'index',
  'revision',
  'error',
]);

// ---------------------------------------------------------------------------------------------
// Parsing and serializing

/** Parses a JSONL history; blank lines are skipped. Throws `HistoryError` naming the line. */
export function parseHistory(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === '') continue;
    const line = i + 1;
    if (raw.length > HISTORY_LINE_BYTES_MAX) {
      throw new HistoryError('HISTORY_PARSE', line, `longer than ${HISTORY_LINE_BYTES_MAX} bytes`);
    }
    if (events.length >= HISTORY_EVENTS_MAX) {
      throw new HistoryError('HISTORY_PARSE', line, `more than ${HISTORY_EVENTS_MAX} events`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (cause) {
      throw new HistoryError('HISTORY_PARSE', line, `not valid JSON: ${String(cause)}`, { cause });
    }
    events.push(validateEvent(parsed, line));
  }
  return events;
}

/** Validates one decoded event; `line` names it in errors. */
export function validateEvent(input: unknown, line: number): HistoryEvent {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new HistoryError('HISTORY_PARSE', line, 'not a JSON object');
  }
  const o = input as Record<string, unknown>;
  for (const field of Object.keys(o)) {
    if (!EVENT_FIELDS.has(field)) {
      throw fieldError(line, field, `unknown field (allowed: ${[...EVENT_FIELDS].join(', ')})`);
    }
  }
  const { process, type, f, key, timeMs } = o;
  if (!Number.isSafeInteger(process) || (process as number) < 0) {
    throw fieldError(line, 'process', 'must be a non-negative integer');
  }
  if (typeof type !== 'string' || !EVENT_TYPES.has(type)) {
    throw fieldError(line, 'type', 'must be one of invoke, ok, fail, info');
  }
  if (typeof f !== 'string' || !OP_FUNCTIONS.has(f)) {
    throw fieldError(line, 'f', 'must be one of read, write, cas');
  }
  if (typeof key !== 'string' || key === '')
    throw fieldError(line, 'key', 'must be a non-empty string');
  if (typeof timeMs !== 'number' || !Number.isFinite(timeMs) || timeMs < 0) {
    throw fieldError(line, 'timeMs', 'must be a finite non-negative number');
  }
  const value = validateValueField(o.value, f as OpFunction, type as EventType, line);
  const event: {
    -readonly [K in keyof HistoryEvent]: HistoryEvent[K];
  } = {
    process: process as number,
    type: type as EventType,
    f: f as OpFunction,
    key,
    value,
    timeMs,
  };
  if (o.index !== undefined) {
    if (!Number.isSafeInteger(o.index) || (o.index as number) < 0) {
      throw fieldError(line, 'index', 'must be a non-negative integer');
    }
    event.index = o.index as number;
  }
  if (o.revision !== undefined) {
    if (!Number.isSafeInteger(o.revision) || (o.revision as number) <= 0) {
      throw fieldError(line, 'revision', 'must be a positive integer');
    }
    if (type !== 'ok' || f === 'read') {
      throw fieldError(line, 'revision', 'only an ok write or cas carries a revision');
    }
    event.revision = o.revision as number;
  }
  if (o.error !== undefined) {
    if (typeof o.error !== 'string') throw fieldError(line, 'error', 'must be a string');
    event.error = o.error;
  }
  return event;
}

function validateValueField(
  value: unknown,
  f: OpFunction,
  type: EventType,
  line: number,
): Value | CasValue {
  switch (f) {
    case 'read':
      // The invocation and a non-ok completion carry no value: absent is read as null.
      if (value === undefined && type !== 'ok') return null;
      if (!isValue(value))
        throw fieldError(line, 'value', 'a read value must be a string, number or null');
      if (type === 'invoke' && value !== null) {
        throw fieldError(line, 'value', 'a read invocation has value null');
      }
      return value;
    case 'write':
      if (!isValue(value) || value === null) {
        throw fieldError(line, 'value', 'a written value must be a string or number (not null)');
      }
      return value;
    case 'cas':
      if (
        !Array.isArray(value) ||
        value.length !== 2 ||
        !isValue(value[0]) ||
        !isValue(value[1]) ||
        value[1] === null
      ) {
        throw fieldError(line, 'value', 'a cas value must be [expected, new] with new not null');
      }
      return [value[0], value[1]] as const;
  }
}

function isValue(v: unknown): v is Value {
  return v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

function fieldError(line: number, field: string, message: string): HistoryError {
  return new HistoryError('HISTORY_FIELD', line, `field "${field}": ${message}`);
}

/** One JSON object per line, fields in a fixed order, a trailing newline. */
export function serializeHistory(events: readonly HistoryEvent[]): string {
  let out = '';
  for (const e of events) {
    const o: Record<string, unknown> = {
      process: e.process,
      type: e.type,
      f: e.f,
      key: e.key,
      value: e.value,
      timeMs: e.timeMs,
    };
    if (e.index !== undefined) o.index = e.index;
    if (e.revision !== undefined) o.revision = e.revision;
    if (e.error !== undefined) o.error = e.error;
    out += `${JSON.stringify(o)}\n`;
  }
  return out;
}

/** Reads and validates a JSONL history file (I/O). */
export async function readHistoryFile(path: string): Promise<HistoryEvent[]> {
  return parseHistory(await readFile(path, 'utf8'));
}

/** Writes a history as JSONL (I/O). */
export async function writeHistoryFile(
  path: string,
  events: readonly HistoryEvent[],
): Promise<void> {
  await writeFile(path, serializeHistory(events), 'utf8');
}

// ---------------------------------------------------------------------------------------------
// Pairing

interface Pending {
  readonly event: HistoryEvent;
  readonly line: number;
}

/**
 * Pairs each invocation with the next completion of the same process, in event order. An
 * invocation with no completion at the end of the history is an unknown outcome (`info`,
 * completeMs = Infinity), as in Knossos. Throws `HistoryError` on a malformed history.
 */
export function pairOperations(events: readonly HistoryEvent[]): Operation[] {
  const pending = new Map<number, Pending>();
  /** Process → line of the `info` completion that retired it. */
  const retired = new Map<number, number>();
  /** Process → time of its last event (time never goes backwards within a process). */
  const lastTimeMs = new Map<number, number>();
  type Draft = { -readonly [K in keyof Operation]: Operation[K] };
  const ops: Draft[] = [];
  const opOfProcess = new Map<number, Draft>();

  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const line = i + 1;
    const last = lastTimeMs.get(e.process);
    if (last !== undefined && e.timeMs < last) {
      throw new HistoryError(
        'HISTORY_TIME',
        line,
        `process ${e.process} time went backwards (${e.timeMs} ms after ${last} ms)`,
      );
    }
    lastTimeMs.set(e.process, e.timeMs);

    if (e.type === 'invoke') {
      const retiredLine = retired.get(e.process);
      if (retiredLine !== undefined) {
        throw new HistoryError(
          'HISTORY_PROCESS_REUSED',
          line,
          `process ${e.process} invokes again after its operation ended in info at line ` +
            `${retiredLine}; a client whose outcome is unknown must continue as a new process`,
        );
      }
      const open = pending.get(e.process);
      if (open !== undefined) {
        throw new HistoryError(
          'HISTORY_PAIRING',
          line,
          `process ${e.process} invokes while its invocation at line ${open.line} is pending`,
        );
      }
      pending.set(e.process, { event: e, line });
      const op: Draft = {
        id: ops.length,
        process: e.process,
        f: e.f,
        key: e.key,
        input: e.f === 'read' ? null : e.value,
        output: undefined,
        invokeMs: e.timeMs,
        completeMs: Number.POSITIVE_INFINITY,
        status: 'info',
      };
      ops.push(op);
      opOfProcess.set(e.process, op);
      continue;
    }

    const open = pending.get(e.process);
    if (open === undefined) {
      throw new HistoryError(
        'HISTORY_PAIRING',
        line,
        `${e.type} of process ${e.process} has no pending invocation`,
      );
    }
    const inv = open.event;
    if (inv.f !== e.f || inv.key !== e.key) {
      throw new HistoryError(
        'HISTORY_PAIRING',
        line,
        `${e.type} ${e.f} "${e.key}" completes invocation ${inv.f} "${inv.key}" of line ${open.line}`,
      );
    }
    if (e.f !== 'read' && !sameInput(inv.value, e.value)) {
      throw new HistoryError(
        'HISTORY_PAIRING',
        line,
        `${e.f} completes with value ${JSON.stringify(e.value)} but was invoked with ` +
          `${JSON.stringify(inv.value)} (line ${open.line})`,
      );
    }
    pending.delete(e.process);
    const op = opOfProcess.get(e.process)!;
    op.status = e.type as OpStatus;
    if (e.type === 'info') {
      retired.set(e.process, line);
    } else {
      op.completeMs = e.timeMs;
      if (e.type === 'ok' && e.f === 'read') op.output = e.value as Value;
    }
    if (e.revision !== undefined) op.revision = e.revision;
    if (e.error !== undefined) op.error = e.error;
  }
  return ops;
}

function sameInput(a: Value | CasValue, b: Value | CasValue): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a[0] === b[0] && a[1] === b[1];
  return a === b;
}

/**
 * The events of a list of operations, ordered by time; events at the same instant are ordered by
 * process and then by the process's own order, so that pairing sees each process's events in
 * sequence. (The checkers read real-time order from the times, not from the event order.) For
 * tests and for rewriting histories: `pairOperations(historyFromOperations(ops))` gives back the
 * same operations, renumbered in invocation order.
 */
export function historyFromOperations(ops: readonly Operation[]): HistoryEvent[] {
  const byProcess = [...ops].sort(
    (a, b) => a.process - b.process || a.invokeMs - b.invokeMs || a.id - b.id,
  );
  const timed: { event: HistoryEvent; seq: number }[] = [];
  for (const op of byProcess) {
    const base = { process: op.process, f: op.f, key: op.key };
    const invokeValue = op.f === 'read' ? null : op.input;
    timed.push({
      event: { ...base, type: 'invoke', value: invokeValue, timeMs: op.invokeMs },
      seq: timed.length,
    });
    // An unknown outcome with no recorded completion stays an open invocation.
    if (op.completeMs === Number.POSITIVE_INFINITY) continue;
    const value = op.f === 'read' ? (op.status === 'ok' ? (op.output ?? null) : null) : op.input;
    const event: { -readonly [K in keyof HistoryEvent]: HistoryEvent[K] } = {
      ...base,
      type: op.status,
      value,
      timeMs: op.completeMs,
    };
    if (op.revision !== undefined) event.revision = op.revision;
    if (op.error !== undefined) event.error = op.error;
    timed.push({ event, seq: timed.length });
  }
  timed.sort(
    (a, b) => a.event.timeMs - b.event.timeMs || a.event.process - b.event.process || a.seq - b.seq,
  );
  return timed.map((t) => t.event);
}

/** "read k1 → 3", "write k1 ← 4", "cas k1 3→5", for explanations and the timeline. */
export function describeOperation(op: Operation): string {
  const time = `${fmtMs(op.invokeMs)}–${op.completeMs === Number.POSITIVE_INFINITY ? '∞' : fmtMs(op.completeMs)} ms`;
  let what: string;
  switch (op.f) {
    case 'read':
      what = `read ${op.key} → ${op.status === 'ok' ? fmtValue(op.output ?? null) : '?'}`;
      break;
    case 'write':
      what = `write ${op.key} ← ${fmtValue(op.input as Value)}`;
      break;
    case 'cas': {
      const [expected, next] = op.input as CasValue;
      what = `cas ${op.key} ${fmtValue(expected)}→${fmtValue(next)}`;
      break;
    }
  }
  return `#${op.id} p${op.process} ${what} [${op.status}, ${time}]`;
}

/** Appends `item` to the list of `key` in `map`, creating the list. */
export function pushTo<K, T>(map: Map<K, T[]>, key: K, item: T): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [item]);
  else list.push(item);
}

export function fmtValue(v: Value): string {
  return v === null ? 'nil' : JSON.stringify(v);
}

function fmtMs(ms: number): string {
  return Number.isInteger(ms) ? String(ms) : ms.toFixed(1);
}
