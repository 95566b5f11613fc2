/**
 * Stage timestamps of log entries through one member, for `bench/put-trace.ts`: where a put's
 * latency goes between processes (append, network, fdatasync, commit, apply), which a CPU
 * profile cannot say. Off unless the member starts with TANDEM_TRACE_DIR set; then it keeps
 * marks in memory (bounded) and writes DIR/<member id in hex>.trace when it stops.
 *
 * Times are CLOCK_MONOTONIC in microseconds (`process.hrtime`, shared by every process of the
 * machine), so marks of different members, and the bench client's, line up.
 *
 * A file is tab-separated lines `stage a b c microseconds`:
 *   append     first last -      a Ready with these entries was taken (its appends leave next)
 *   durable    first last -      their write is durable (the acknowledgements leave next)
 *   commit     first last -      a Ready with these committed entries was taken
 *   applied    index seq  bytes  applied; seq is the proposal's when this member proposed it, else 0
 *   recv-app   first last from   an append with entries was stepped
 *   recv-commit commit -  from   an append or heartbeat carrying this commit index was stepped
 *   recv-ack   index -    from   an append acknowledgement (not a rejection) was stepped
 *   recv-prop  count -    from   a forwarded proposal was stepped (the leader appends it now)
 *   rpc        start code -      a KV Put call that started at `start` (µs) is answering now
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Message, MessageType, type NodeId, type Ready } from '../raft/types.js';
import { decodeEnvelope } from '../server/envelope.js';
import { MemberEvents } from '../server/events.js';

/** Marks kept, at most (5 numbers each): minutes of puts at 1 in flight. Later ones are dropped. */
export const TRACE_MARKS_MAX = 500_000;
const FIELDS = 5;
const PUT_PATH = '/etcdserverpb.KV/Put';

const STAGES = [
  'append',
  'durable',
  'commit',
  'applied',
  'recv-app',
  'recv-commit',
  'recv-ack',
  'recv-prop',
  'rpc',
] as const;
export type TraceStage = (typeof STAGES)[number];
const STAGE_CODE = new Map<TraceStage, number>(STAGES.map((s, i) => [s, i]));

export interface TraceMark {
  readonly stage: TraceStage;
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly us: number;
}

/** Monotonic microseconds, comparable across the machine's processes. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export class EntryTrace {
  private readonly marks = new Float64Array(TRACE_MARKS_MAX * FIELDS);
  private count = 0;
  dropped = 0;

  constructor(private readonly selfId: NodeId) {}

  mark(stage: TraceStage, a: number, b: number, c: number): void {
    if (this.count >= TRACE_MARKS_MAX) {
      this.dropped++;
      return;
    }
    const at = this.count++ * FIELDS;
    this.marks[at] = STAGE_CODE.get(stage)!;
    this.marks[at + 1] = a;
    this.marks[at + 2] = b;
    this.marks[at + 3] = c;
    this.marks[at + 4] = monotonicUs();
  }

  attach(events: MemberEvents): void {
    MemberEvents.add(events.readyTaken, (rd) => this.taken(rd));
    MemberEvents.add(events.readySaved, (rd) => {
      if (rd.entries.length > 0) {
        this.mark('durable', rd.entries[0]!.index, rd.entries.at(-1)!.index, 0);
      }
    });
    MemberEvents.add(events.stepped, (m) => this.stepped(m));
    MemberEvents.add(events.applied, (entry) => {
      const envelope = entry.data.length > 0 ? decodeEnvelope(entry.data) : null;
      const seq = envelope !== null && envelope.proposer === this.selfId ? envelope.seq : 0;
      this.mark('applied', entry.index, seq, entry.data.length);
    });
  }

  private taken(rd: Ready): void {
    if (rd.entries.length > 0) {
      this.mark('append', rd.entries[0]!.index, rd.entries.at(-1)!.index, 0);
    }
    if (rd.committedEntries.length > 0) {
      const committed = rd.committedEntries;
      this.mark('commit', committed[0]!.index, committed.at(-1)!.index, 0);
    }
  }

  private stepped(m: Message): void {
    const from = m.from;
    switch (m.type) {
      case MessageType.App:
        if (m.entries.length > 0) {
          this.mark('recv-app', m.entries[0]!.index, m.entries.at(-1)!.index, from);
        }
        this.mark('recv-commit', m.commit, 0, from);
        break;
      case MessageType.Heartbeat:
        this.mark('recv-commit', m.commit, 0, from);
        break;
      case MessageType.AppResp:
        if (!m.reject) this.mark('recv-ack', m.index, 0, from);
        break;
      case MessageType.Prop:
        this.mark('recv-prop', m.entries.length, 0, from);
        break;
    }
  }

  /** A gRPC call is answering (the API server's onCallEnd): marked for KV Puts only. */
  noteCall(path: string, code: number, seconds: number): void {
    if (path !== PUT_PATH) return;
    const nowUs = monotonicUs();
    this.mark('rpc', Math.round(nowUs - seconds * 1e6), code, 0);
  }

  /** The marks as the file's text (see the header). */
  text(): string {
    const lines: string[] = [];
    for (let i = 0; i < this.count; i++) {
      const at = i * FIELDS;
      const m = this.marks;
      lines.push(`${STAGES[m[at]!]}\t${m[at + 1]}\t${m[at + 2]}\t${m[at + 3]}\t${m[at + 4]}`);
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  /** Writes DIR/<member id in hex>.trace; returns its path. */
  write(dir: string): string {
    const path = join(dir, `${this.selfId.toString(16)}.trace`);
    writeFileSync(path, this.text());
    return path;
  }
}

/** Reads a trace file's text back into marks. Throws on a malformed line, naming it. */
export function parseTrace(text: string): TraceMark[] {
  const marks: TraceMark[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const [stage, a, b, c, us] = line.split('\t');
    const numbers = [a, b, c, us].map(Number);
    if (!STAGE_CODE.has(stage as TraceStage) || numbers.some((n) => !Number.isFinite(n))) {
      throw new Error(`trace line ${i + 1} is malformed: ${JSON.stringify(line)}`);
    }
    marks.push({
      stage: stage as TraceStage,
      a: numbers[0]!,
      b: numbers[1]!,
      c: numbers[2]!,
      us: numbers[3]!,
    });
  }
  return marks;
}
