/**
 * How a chaos run shows its progress: a cli-progress bar when the output is a terminal, plain
 * periodic lines otherwise (CI logs, pipes), nothing when quiet. Notes (phase changes, faults)
 * go to stderr so that stdout keeps the one-line verdict.
 */
import cliProgress from 'cli-progress';
import type { ChaosProgress } from './run.js';

/** Plain progress lines at most this often. */
export const PROGRESS_LINE_INTERVAL_MS = 5_000;

export interface ProgressView {
  update(p: ChaosProgress): void;
  note(text: string): void;
  stop(): void;
}

export function progressView(mode: 'bar' | 'lines' | 'none'): ProgressView {
  if (mode === 'none') return { update() {}, note() {}, stop() {} };
  if (mode === 'lines') return linesView();
  return barView();
}

function counts(p: ChaosProgress): string {
  return `ops ${p.ops} ok ${p.ok} fail ${p.fail} info ${p.info}`;
}

function linesView(): ProgressView {
  let lastMs = Number.NEGATIVE_INFINITY;
  return {
    update(p) {
      const now = Date.now();
      if (p.phase === 'running' && now - lastMs < PROGRESS_LINE_INTERVAL_MS) return;
      lastMs = now;
      const fault = p.fault === null ? '' : ` | fault: ${p.fault}`;
      process.stderr.write(
        `chaos ${p.phase} ${(p.elapsedMs / 1000).toFixed(0)}/${(p.totalMs / 1000).toFixed(0)} s | ${counts(p)}${fault}\n`,
      );
    },
    note(text) {
      process.stderr.write(`${text}\n`);
    },
    stop() {},
  };
}

function barView(): ProgressView {
  const bar = new cliProgress.SingleBar(
    {
      format: 'chaos {phase} [{bar}] {elapsed_s}/{total_s} s | {counts} | {fault}',
      barsize: 30,
      hideCursor: true,
      clearOnComplete: false,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const payload = (p: ChaosProgress) => ({
    phase: p.phase.padEnd(8),
    elapsed_s: (p.elapsedMs / 1000).toFixed(0),
    total_s: (p.totalMs / 1000).toFixed(0),
    counts: counts(p),
    fault: p.fault ?? 'no fault',
  });
  return {
    update(p) {
      if (!started) {
        bar.start(p.totalMs, 0, payload(p));
        started = true;
      }
      bar.update(Math.max(0, p.elapsedMs), payload(p));
    },
    note(text) {
      // Faults show on the bar; other notes print above it.
      if (started && text.startsWith('nemesis: ')) return;
      if (started) bar.stop();
      process.stderr.write(`${text}\n`);
      if (started) started = false;
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
