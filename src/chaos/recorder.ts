/**
 * Records a history as it happens (the format of history.ts): one monotonic clock for every
 * process, an invocation before the request is sent and a completion once its outcome is known.
 *
 * Jepsen's rule is enforced here, where it is cheapest to get right: `complete(…, 'info')`
 * retires the process and returns the fresh process id the client continues under.
 */
import { performance } from 'node:perf_hooks';
import { assert } from '../util/assert.js';
import type { CasValue, EventType, HistoryEvent, OpFunction, Value } from './history.js';
import { HISTORY_EVENTS_MAX } from './limits.js';

export type Outcome = Exclude<EventType, 'invoke'>;

export interface OpenOperation {
  readonly process: number;
  readonly f: OpFunction;
  readonly key: string;
  readonly value: Value | CasValue;
}

export interface RecorderCounts {
  readonly invoked: number;
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
}

export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];
  private readonly originMs: number;
  private processNext = 0;
  private readonly open = new Set<number>();
  private counts = { invoked: 0, ok: 0, fail: 0, info: 0 };

  constructor(private readonly eventsMax = HISTORY_EVENTS_MAX) {
    this.originMs = performance.now();
  }

  /** Milliseconds since the recorder was made (monotonic, microsecond resolution). */
  nowMs(): number {
    return Math.round((performance.now() - this.originMs) * 1000) / 1000;
  }

  newProcess(): number {
    return this.processNext++;
  }

  /** True once the history is full: clients stop invoking (room is kept for open operations). */
  get full(): boolean {
    return this.events.length + this.open.size + 2 > this.eventsMax;
  }

  get snapshot(): RecorderCounts {
    return { ...this.counts };
  }

  invoke(process: number, f: OpFunction, key: string, value: Value | CasValue): OpenOperation {
    assert(!this.open.has(process), `process ${process} already has an operation open`);
    assert(!this.full, 'history full');
    this.open.add(process);
    this.counts.invoked++;
    this.events.push({
      process,
      type: 'invoke',
      f,
      key,
      value: f === 'read' ? null : value,
      timeMs: this.nowMs(),
    });
    return { process, f, key, value };
  }

  /**
   * Completes an open operation. `readValue` is the value an ok read returned; `revision` the
   * header revision of an ok write or cas. Returns the process id to continue under: the same,
   * or a fresh one after `info`.
   */
  complete(
    op: OpenOperation,
    outcome: Outcome,
    extra: { readValue?: Value; revision?: number; error?: string } = {},
  ): number {
    assert(this.open.delete(op.process), `process ${op.process} has no open operation`);
    this.counts[outcome]++;
    const value =
      op.f === 'read' ? (outcome === 'ok' ? (extra.readValue ?? null) : null) : op.value;
    const event: { -readonly [K in keyof HistoryEvent]: HistoryEvent[K] } = {
      process: op.process,
      type: outcome,
      f: op.f,
      key: op.key,
      value,
      timeMs: this.nowMs(),
    };
    if (outcome === 'ok' && op.f !== 'read' && extra.revision !== undefined && extra.revision > 0) {
      event.revision = extra.revision;
    }
    if (outcome !== 'ok' && extra.error !== undefined) event.error = extra.error.slice(0, 200);
    this.events.push(event);
    return outcome === 'info' ? this.newProcess() : op.process;
  }
}
