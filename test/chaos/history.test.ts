import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HistoryError } from '../../src/chaos/errors.js';
import {
  type HistoryEvent,
  historyFromOperations,
  pairOperations,
  parseHistory,
  readHistoryFile,
  serializeHistory,
  writeHistoryFile,
} from '../../src/chaos/history.js';
import { genLinearizable } from './gen.js';

const line = (o: Record<string, unknown>) => JSON.stringify(o);
const inv = (process: number, f: string, key: string, value: unknown, timeMs: number) =>
  line({ process, type: 'invoke', f, key, value, timeMs });
const done = (
  process: number,
  type: string,
  f: string,
  key: string,
  value: unknown,
  timeMs: number,
) => line({ process, type, f, key, value, timeMs });

function expectError(text: string, code: string, lineNo: number, pattern: RegExp) {
  assert.throws(
    () => pairOperations(parseHistory(text)),
    (e: unknown) => {
      assert.ok(e instanceof HistoryError, String(e));
      assert.equal(e.code, code);
      assert.equal(e.line, lineNo);
      assert.match(e.message, new RegExp(`^history line ${lineNo}: `));
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test('parses, pairs and serializes a history', () => {
  const text = [
    inv(0, 'write', 'k', 1, 0),
    inv(1, 'read', 'k', null, 1),
    line({ process: 0, type: 'ok', f: 'write', key: 'k', value: 1, timeMs: 5, revision: 2 }),
    done(1, 'ok', 'read', 'k', 1, 6),
    inv(2, 'cas', 'k', [1, 'two'], 7),
    line({
      process: 2,
      type: 'info',
      f: 'cas',
      key: 'k',
      value: [1, 'two'],
      timeMs: 9,
      error: 'timeout',
    }),
    '',
    inv(3, 'read', 'k', null, 10),
    line({ process: 3, type: 'fail', f: 'read', key: 'k', timeMs: 12 }),
    inv(4, 'write', 'k', 3, 13),
  ].join('\n');
  const events = parseHistory(text);
  assert.equal(events.length, 9);
  assert.equal(parseHistory(serializeHistory(events)).length, 9);
  assert.deepEqual(parseHistory(serializeHistory(events)), events);
  const ops = pairOperations(events);
  assert.deepEqual(
    ops.map((op) => [op.id, op.process, op.f, op.status, op.output, op.invokeMs, op.completeMs]),
    [
      [0, 0, 'write', 'ok', undefined, 0, 5],
      [1, 1, 'read', 'ok', 1, 1, 6],
      [2, 2, 'cas', 'info', undefined, 7, Number.POSITIVE_INFINITY],
      [3, 3, 'read', 'fail', undefined, 10, 12],
      [4, 4, 'write', 'info', undefined, 13, Number.POSITIVE_INFINITY], // never completed
    ],
  );
  assert.equal(ops[0]!.revision, 2);
  assert.equal(ops[2]!.error, 'timeout');
  assert.deepEqual(ops[2]!.input, [1, 'two']);
});

test('malformed lines are rejected with the line number', () => {
  expectError(`${inv(0, 'read', 'k', null, 0)}\n{oops`, 'HISTORY_PARSE', 2, /not valid JSON/);
  expectError('[1,2]', 'HISTORY_PARSE', 1, /not a JSON object/);
  expectError(
    line({ process: 0, type: 'invoke', f: 'read', key: 'k', timeMs: 0, node: 'n1' }),
    'HISTORY_FIELD',
    1,
    /"node": unknown field/,
  );
  expectError(inv(-1, 'read', 'k', null, 0), 'HISTORY_FIELD', 1, /"process"/);
  expectError(
    line({ process: 0, type: 'begin', f: 'read', key: 'k', timeMs: 0 }),
    'HISTORY_FIELD',
    1,
    /"type"/,
  );
  expectError(inv(0, 'delete', 'k', null, 0), 'HISTORY_FIELD', 1, /"f"/);
  expectError(inv(0, 'read', '', null, 0), 'HISTORY_FIELD', 1, /"key"/);
  expectError(inv(0, 'read', 'k', null, -1), 'HISTORY_FIELD', 1, /"timeMs"/);
  expectError(inv(0, 'write', 'k', null, 0), 'HISTORY_FIELD', 1, /not null/);
  expectError(inv(0, 'write', 'k', { a: 1 }, 0), 'HISTORY_FIELD', 1, /"value"/);
  expectError(inv(0, 'cas', 'k', [1], 0), 'HISTORY_FIELD', 1, /\[expected, new\]/);
  expectError(inv(0, 'cas', 'k', [1, null], 0), 'HISTORY_FIELD', 1, /new not null/);
  expectError(inv(0, 'read', 'k', 3, 0), 'HISTORY_FIELD', 1, /read invocation has value null/);
  expectError(
    `${inv(0, 'read', 'k', null, 0)}\n${line({ process: 0, type: 'ok', f: 'read', key: 'k', value: 1, timeMs: 1, revision: 3 })}`,
    'HISTORY_FIELD',
    2,
    /only an ok write or cas carries a revision/,
  );
});

test('pairing errors name the line and the process', () => {
  expectError(
    `${inv(0, 'read', 'k', null, 0)}\n${inv(0, 'read', 'k', null, 1)}`,
    'HISTORY_PAIRING',
    2,
    /process 0 invokes while its invocation at line 1 is pending/,
  );
  expectError(done(3, 'ok', 'read', 'k', 1, 0), 'HISTORY_PAIRING', 1, /no pending invocation/);
  expectError(
    `${inv(0, 'read', 'k', null, 0)}\n${done(0, 'ok', 'read', 'other', 1, 1)}`,
    'HISTORY_PAIRING',
    2,
    /completes invocation read "k"/,
  );
  expectError(
    `${inv(0, 'write', 'k', 1, 0)}\n${done(0, 'ok', 'write', 'k', 2, 1)}`,
    'HISTORY_PAIRING',
    2,
    /invoked with 1/,
  );
  expectError(
    `${inv(0, 'write', 'k', 1, 5)}\n${done(0, 'ok', 'write', 'k', 1, 4)}`,
    'HISTORY_TIME',
    2,
    /time went backwards/,
  );
});

test("Jepsen's rule: a process whose operation ended in info never invokes again", () => {
  const text = [
    inv(0, 'write', 'k', 1, 0),
    done(0, 'info', 'write', 'k', 1, 5),
    inv(1, 'read', 'k', null, 6),
    inv(0, 'read', 'k', null, 7),
  ].join('\n');
  expectError(text, 'HISTORY_PROCESS_REUSED', 4, /process 0 invokes again after .* info at line 2/);
  // A fail does not retire the process.
  const ok = [
    inv(0, 'write', 'k', 1, 0),
    done(0, 'fail', 'write', 'k', 1, 5),
    inv(0, 'read', 'k', null, 6),
  ];
  assert.equal(pairOperations(parseHistory(ok.join('\n'))).length, 2);
});

test('historyFromOperations round-trips generated histories through pairing', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const { ops } = genLinearizable(seed, {
      ops: 200,
      processes: 5,
      keys: 3,
      valuesMax: 3,
      infoRate: 0.05,
      readRate: 0.4,
      casRate: 0.3,
      durationMsMax: 5, // integer times: many ties, the hard case for event order
      gapMsMax: 2,
    });
    const again = pairOperations(parseHistory(serializeHistory(historyFromOperations(ops))));
    const canon = (list: typeof ops) =>
      list
        .map((op) => JSON.stringify({ ...op, id: 0 }))
        .sort()
        .join('\n');
    assert.equal(canon(again), canon(ops), `seed ${seed}`);
  }
});

test('history files are written and read back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-chaos-'));
  try {
    const events: HistoryEvent[] = [
      { process: 0, type: 'invoke', f: 'write', key: 'k', value: 'v', timeMs: 0 },
      { process: 0, type: 'ok', f: 'write', key: 'k', value: 'v', timeMs: 1.5, revision: 9 },
    ];
    const path = join(dir, 'history.jsonl');
    await writeHistoryFile(path, events);
    assert.deepEqual(await readHistoryFile(path), events);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
