/**
 * The outcome of a chaos run: a one-line verdict, a machine-readable result object (plain JSON:
 * unknown completion times become null), and a self-contained HTML timeline — one lane per
 * process, operations as bars coloured by status, fault intervals shaded, operations involved in
 * a violation outlined. Plain string templating, no dependencies; file writing is isolated in
 * `writeReportFiles`.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AvailabilityResult, LeaseResult, LostWritesResult, WatchResult } from './checks.js';
import { describeOperation, type Operation } from './history.js';
import { EXPLANATION_PREFIX_OPS_SHOWN, TIMELINE_OPS_MAX } from './limits.js';
import type { LinearizabilityResult } from './linearizability.js';

export interface ChaosChecks {
  readonly linearizability?: LinearizabilityResult;
  readonly lostWrites?: LostWritesResult;
  readonly watches?: WatchResult;
  readonly leases?: LeaseResult;
  readonly availability?: AvailabilityResult;
}

/** A fault the nemesis injected, for shading on the timeline. */
export interface FaultInterval {
  readonly kind: string;
  readonly startMs: number;
  /** Infinity (or absent) when the fault was never healed. */
  readonly endMs?: number;
  readonly target?: string;
}

export type RunVerdict = 'pass' | 'fail' | 'unknown';

/** Plain JSON (no Infinity, no cycles): what `tandem chaos --json` prints. */
export interface ChaosReport {
  readonly verdict: RunVerdict;
  readonly line: string;
  readonly opsCount: number;
  readonly checks: {
    readonly linearizability?: {
      readonly verdict: string;
      readonly stepsTotal: number;
      readonly keys: readonly {
        readonly key: string;
        readonly verdict: string;
        readonly opsSearched: number;
        readonly steps: number;
        readonly unknownReason?: string;
      }[];
      readonly violations: readonly {
        readonly key: string;
        readonly text: string;
        readonly prefixLength: number;
        readonly prefixTail: readonly JsonOperation[];
        readonly blocking: JsonOperation;
        readonly candidates: readonly JsonOperation[];
      }[];
    };
    readonly lostWrites?: {
      readonly verdict: string;
      readonly acknowledgedWrites: number;
      readonly keysUnread: readonly string[];
      readonly lost: readonly { key: string; text: string; frontier: readonly JsonOperation[] }[];
    };
    readonly watches?: WatchResult;
    readonly leases?: LeaseResult;
    readonly availability?: AvailabilityResult;
  };
}

export type JsonOperation = Omit<Operation, 'completeMs'> & { readonly completeMs: number | null };

export function jsonOperation(op: Operation): JsonOperation {
  const { completeMs, ...rest } = op;
  const json: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(rest)) if (value !== undefined) json[field] = value;
  json.completeMs = Number.isFinite(completeMs) ? completeMs : null;
  return json as JsonOperation;
}

/** The overall verdict: any violation fails; else anything undecided is unknown; else pass. */
export function runVerdict(checks: ChaosChecks): RunVerdict {
  const verdicts = [
    checks.linearizability?.verdict,
    checks.lostWrites?.verdict,
    checks.watches?.verdict,
    checks.leases?.verdict,
  ];
  if (verdicts.includes('violation')) return 'fail';
  if (verdicts.includes('unknown')) return 'unknown';
  return 'pass';
}

/** One line, e.g. `PASS 10000 ops: linearizable (5 keys); no lost writes; 97.1% ok, …`. */
export function verdictLine(checks: ChaosChecks, opsCount: number): string {
  const parts: string[] = [];
  const lin = checks.linearizability;
  if (lin !== undefined) {
    if (lin.verdict === 'ok')
      parts.push(`linearizable (${lin.keys.length} keys, ${lin.stepsTotal} steps)`);
    else if (lin.verdict === 'violation') {
      const keys = lin.violations.map((v) => JSON.stringify(v.key)).join(', ');
      parts.push(`NOT linearizable on key ${keys}`);
    } else {
      const undecided = lin.keys
        .filter((k) => k.verdict === 'unknown')
        .map((k) => JSON.stringify(k.key));
      parts.push(`linearizability unknown on ${undecided.join(', ')} (search budget exceeded)`);
    }
  }
  const lost = checks.lostWrites;
  if (lost !== undefined) {
    if (lost.verdict === 'ok')
      parts.push(`no lost writes (${lost.acknowledgedWrites} acknowledged)`);
    else if (lost.verdict === 'violation') parts.push(`LOST writes on ${lost.lost.length} key(s)`);
    else parts.push(`lost writes unchecked on ${lost.keysUnread.length} unread key(s)`);
  }
  const watches = checks.watches;
  if (watches !== undefined) {
    parts.push(
      watches.verdict === 'ok'
        ? `watches ok (${watches.watchersChecked})`
        : `WATCH problems: ${watches.problemsCount} (first: ${watches.problems[0]?.kind})`,
    );
  }
  const leases = checks.leases;
  if (leases !== undefined) {
    parts.push(
      leases.verdict === 'ok'
        ? `leases ok (${leases.leasesChecked})`
        : `LEASE expired early: ${leases.problems.length}`,
    );
  }
  const a = checks.availability;
  if (a !== undefined) {
    parts.push(
      `${(a.okShare * 100).toFixed(1)}% ok, longest write gap ${(a.longestWriteGap.durationMs / 1000).toFixed(2)} s`,
    );
  }
  return `${runVerdict(checks).toUpperCase()} ${opsCount} ops: ${parts.join('; ')}`;
}

export function buildReport(checks: ChaosChecks, opsCount: number): ChaosReport {
  const lin = checks.linearizability;
  const lost = checks.lostWrites;
  return {
    verdict: runVerdict(checks),
    line: verdictLine(checks, opsCount),
    opsCount,
    checks: {
      ...(lin && {
        linearizability: {
          verdict: lin.verdict,
          stepsTotal: lin.stepsTotal,
          keys: lin.keys.map((k) => ({
            key: k.key,
            verdict: k.verdict,
            opsSearched: k.opsSearched,
            steps: k.steps,
            ...(k.unknownReason && { unknownReason: k.unknownReason }),
          })),
          violations: lin.violations.map((v) => ({
            key: v.key,
            text: v.text,
            prefixLength: v.prefix.length,
            prefixTail: v.prefix.slice(-EXPLANATION_PREFIX_OPS_SHOWN).map(jsonOperation),
            blocking: jsonOperation(v.blocking),
            candidates: v.candidates.map(jsonOperation),
          })),
        },
      }),
      ...(lost && {
        lostWrites: {
          verdict: lost.verdict,
          acknowledgedWrites: lost.acknowledgedWrites,
          keysUnread: lost.keysUnread,
          lost: lost.lost.map((l) => ({
            key: l.key,
            text: l.text,
            frontier: l.frontier.map(jsonOperation),
          })),
        },
      }),
      ...(checks.watches && { watches: checks.watches }),
      ...(checks.leases && { leases: checks.leases }),
      ...(checks.availability && { availability: checks.availability }),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HTML timeline

export interface TimelineInput {
  readonly title: string;
  readonly ops: readonly Operation[];
  readonly checks?: ChaosChecks;
  readonly faults?: readonly FaultInterval[];
}

/** Operation ids a violation involves: `culprit` ones are outlined, `context` ones marked. */
export function violationOps(checks: ChaosChecks): { culprit: Set<number>; context: Set<number> } {
  const culprit = new Set<number>();
  const context = new Set<number>();
  for (const v of checks.linearizability?.violations ?? []) {
    culprit.add(v.blocking.id);
    for (const op of v.candidates) culprit.add(op.id);
    for (const op of v.prefix.slice(-EXPLANATION_PREFIX_OPS_SHOWN)) context.add(op.id);
  }
  for (const l of checks.lostWrites?.lost ?? []) for (const op of l.frontier) culprit.add(op.id);
  return { culprit, context };
}

const STYLE = `
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px}
.verdict{font-weight:600;margin:4px 0 12px}
.pass{color:#17803d}.fail{color:#b42318}.unknown{color:#a15c00}
pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;border-left:3px solid #b42318}
.legend span{display:inline-block;margin-right:12px}
.sw{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
.chart{display:flex;margin-top:8px}
.labels{flex:none;width:56px}
.label{height:18px;line-height:18px;font-size:11px;color:#555}
.plot{position:relative;flex:1;border-left:1px solid #ccc;background:repeating-linear-gradient(#fff 0 18px,#fafafa 18px 36px)}
.op{position:absolute;height:12px;margin-top:3px;min-width:2px;border-radius:2px;overflow:hidden;font-size:9px;line-height:12px;color:#fff;white-space:nowrap;box-sizing:border-box}
.s-ok{background:#2e7d32}.s-fail{background:#9e9e9e}
.s-info{background:repeating-linear-gradient(45deg,#ef8f00 0 4px,#f5b04d 4px 8px)}
.f-read.s-ok{background:#1565c0}
.culprit{outline:2px solid #d50000;outline-offset:1px;z-index:3}
.context{box-shadow:0 0 0 2px #ffab91;z-index:2}
.fault{position:absolute;top:0;bottom:0;background:rgba(211,47,47,.10);border-left:1px dashed #d32f2f;border-right:1px dashed #d32f2f;z-index:0}
.fault b{position:absolute;top:-16px;left:2px;font-size:10px;color:#b71c1c;white-space:nowrap;font-weight:500}
.axis{position:relative;height:18px;margin-left:57px;font-size:10px;color:#666}
.axis span{position:absolute;transform:translateX(-50%)}
`;

/** A self-contained HTML page (inline CSS, no scripts, no external resources). */
export function renderTimelineHtml(input: TimelineInput): string {
  const ops = input.ops.slice(0, TIMELINE_OPS_MAX);
  const faults = input.faults ?? [];
  let startMs = Number.POSITIVE_INFINITY;
  let endMs = Number.NEGATIVE_INFINITY;
  for (const op of ops) {
    startMs = Math.min(startMs, op.invokeMs);
    endMs = Math.max(
      endMs,
      op.invokeMs,
      Number.isFinite(op.completeMs) ? op.completeMs : op.invokeMs,
    );
  }
  for (const f of faults) {
    startMs = Math.min(startMs, f.startMs);
    endMs = Math.max(
      endMs,
      f.startMs,
      f.endMs !== undefined && Number.isFinite(f.endMs) ? f.endMs : f.startMs,
    );
  }
  if (!Number.isFinite(startMs)) startMs = endMs = 0;
  const spanMs = Math.max(endMs - startMs, 1);
  const pct = (t: number): string => (((Math.min(t, endMs) - startMs) / spanMs) * 100).toFixed(3);

  const processes = [...new Set(ops.map((op) => op.process))].sort((a, b) => a - b);
  const lane = new Map(processes.map((p, i) => [p, i]));
  const { culprit, context } = input.checks
    ? violationOps(input.checks)
    : { culprit: new Set<number>(), context: new Set<number>() };

  const bars: string[] = [];
  for (const op of ops) {
    const end = Number.isFinite(op.completeMs) ? op.completeMs : endMs;
    const left = pct(op.invokeMs);
    const width = Math.max(Number(pct(end)) - Number(left), 0.05).toFixed(3);
    const classes = [`op`, `s-${op.status}`, `f-${op.f}`];
    if (culprit.has(op.id)) classes.push('culprit');
    else if (context.has(op.id)) classes.push('context');
    const label =
      op.f === 'read'
        ? `r ${op.status === 'ok' ? String(op.output) : '?'}`
        : op.f === 'write'
          ? `w ${String(op.input)}`
          : `cas ${String(op.input)}`;
    bars.push(
      `<div class="${classes.join(' ')}" style="left:${left}%;width:${width}%;top:${lane.get(op.process)! * 18}px" title="${esc(describeOperation(op))}">${esc(label)}</div>`,
    );
  }
  const shades = faults.map((f) => {
    const end = f.endMs !== undefined && Number.isFinite(f.endMs) ? f.endMs : endMs;
    const width = Math.max(Number(pct(end)) - Number(pct(f.startMs)), 0.1).toFixed(3);
    const what = `${f.kind}${f.target ? ` ${f.target}` : ''}`;
    return `<div class="fault" style="left:${pct(f.startMs)}%;width:${width}%" title="${esc(`${what}: ${f.startMs}–${f.endMs ?? '∞'} ms`)}"><b>${esc(what)}</b></div>`;
  });
  const ticks: string[] = [];
  for (let i = 0; i <= 10; i++) {
    const t = startMs + (spanMs * i) / 10;
    ticks.push(`<span style="left:${i * 10}%">${esc(((t - startMs) / 1000).toFixed(2))} s</span>`);
  }

  const checks = input.checks ?? {};
  const verdict = runVerdict(checks);
  const explanations = [
    ...(checks.linearizability?.violations ?? []).map((v) => v.text),
    ...(checks.lostWrites?.lost ?? []).map((l) => l.text),
    ...(checks.watches?.problems ?? [])
      .slice(0, 10)
      .map((p) => `watch ${p.watcher} ${p.kind} ${p.key}@${p.revision}: ${p.message}`),
    ...(checks.leases?.problems ?? []).slice(0, 10).map((p) => p.message),
  ];
  const truncated =
    input.ops.length > ops.length
      ? `<p>Showing the first ${ops.length} of ${input.ops.length} operations.</p>`
      : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(input.title)}</title><style>${STYLE}</style></head>
<body>
<h1>${esc(input.title)}</h1>
<div class="verdict ${verdict}">${esc(verdictLine(checks, input.ops.length))}</div>
${explanations.map((t) => `<pre>${esc(t)}</pre>`).join('\n')}
<div class="legend"><span><i class="sw s-ok"></i>write/cas ok</span><span><i class="sw f-read s-ok"></i>read ok</span><span><i class="sw s-fail"></i>fail</span><span><i class="sw s-info"></i>info (unknown outcome)</span><span><i class="sw" style="background:rgba(211,47,47,.2)"></i>fault</span><span><i class="sw culprit" style="background:#fff"></i>in a violation</span></div>
${truncated}
<div class="chart" style="margin-top:24px"><div class="labels">${processes.map((p) => `<div class="label">p${p}</div>`).join('')}</div>
<div class="plot" style="height:${Math.max(processes.length, 1) * 18}px">
${shades.join('\n')}
${bars.join('\n')}
</div></div>
<div class="axis">${ticks.join('')}</div>
</body></html>
`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Writes `result.json`, `verdict.txt` and `timeline.html` into `dir` (I/O). */
export async function writeReportFiles(dir: string, input: TimelineInput): Promise<ChaosReport> {
  const report = buildReport(input.checks ?? {}, input.ops.length);
  await writeFile(join(dir, 'result.json'), `${JSON.stringify(report, null, 2)}\n`, 'utf8');
  await writeFile(join(dir, 'verdict.txt'), `${report.line}\n`, 'utf8');
  await writeFile(join(dir, 'timeline.html'), renderTimelineHtml(input), 'utf8');
  return report;
}
