/**
 * Golden scenarios for the redundancy round (etcd-io/raft's testdata/*.txt, datadriven style):
 * each file under testdata/ is a script of commands (scenario.ts lists them), each followed by
 * `----` and the canonical output it printed. This test replays every file and compares; after
 * an intended change, regenerate the outputs and review the diff:
 *
 *   REWRITE=1 node --import tsx --test test/cluster/golden.test.ts
 *
 * File format: blocks separated by blank lines; `#` lines are comments. A block is a command
 * line, optional input lines, `----`, then its output (no blank lines) up to the next blank line.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Scenario, ScenarioError } from './scenario.js';

const TESTDATA = join(dirname(fileURLToPath(import.meta.url)), 'testdata');
const REWRITE = process.env.REWRITE === '1';
const SEPARATOR = '----';

type Item =
  | { readonly kind: 'text'; readonly line: string }
  | {
      readonly kind: 'command';
      readonly lineNo: number;
      readonly lines: readonly string[];
      readonly expected: readonly string[];
    };

function parse(text: string): Item[] {
  const lines = text.replace(/\n$/, '').split('\n');
  const items: Item[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === '' || line.startsWith('#')) {
      items.push({ kind: 'text', line });
      i++;
      continue;
    }
    const lineNo = i + 1;
    const command: string[] = [];
    while (i < lines.length && lines[i] !== SEPARATOR) {
      if (lines[i]!.trim() === '')
        throw new Error(`line ${lineNo}: a command without ${SEPARATOR}`);
      command.push(lines[i++]!);
    }
    if (i === lines.length) throw new Error(`line ${lineNo}: a command without ${SEPARATOR}`);
    i++; // the separator
    const expected: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== '') expected.push(lines[i++]!);
    items.push({ kind: 'command', lineNo, lines: command, expected });
  }
  return items;
}

function render(items: readonly Item[], outputs: ReadonlyMap<Item, readonly string[]>): string {
  const out: string[] = [];
  for (const item of items) {
    if (item.kind === 'text') out.push(item.line);
    else out.push(...item.lines, SEPARATOR, ...(outputs.get(item) ?? item.expected));
  }
  return `${out.join('\n')}\n`;
}

/** A script's mistake (a bad argument, `commit` with nothing in flight) prints as its output. */
function runCommand(scenario: Scenario, command: string, input: readonly string[]): string[] {
  try {
    return scenario.run(command, input);
  } catch (error) {
    if (error instanceof ScenarioError) return [`error: ${error.message}`];
    throw error;
  }
}

const files = readdirSync(TESTDATA)
  .filter((f) => f.endsWith('.txt'))
  .sort();

test('there are golden scenarios', () => {
  assert.ok(files.length >= 8, `scenarios in ${TESTDATA}: ${files.join(', ')}`);
});

for (const file of files) {
  test(`golden: ${file}`, () => {
    const path = join(TESTDATA, file);
    const items = parse(readFileSync(path, 'utf8'));
    const scenario = new Scenario();
    const outputs = new Map<Item, readonly string[]>();
    for (const item of items) {
      if (item.kind !== 'command') continue;
      const [command, ...input] = item.lines;
      const got = runCommand(scenario, command!, input);
      assert.ok(
        got.every((l) => l.trim() !== ''),
        `${file}:${item.lineNo}: output has a blank line`,
      );
      outputs.set(item, got);
      if (!REWRITE) {
        assert.deepEqual(
          got,
          item.expected,
          `${file}:${item.lineNo}: ${command} (REWRITE=1 regenerates after an intended change)`,
        );
      }
    }
    if (REWRITE) writeFileSync(path, render(items, outputs));
  });
}
