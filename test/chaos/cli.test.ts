/**
 * `tandem chaos` refuses bad arguments before starting anything (exit 2), and the member's
 * test-mode switch is off by default and reachable from the file, the environment and a flag.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/cli/config.js';
import { run } from '../../src/cli/main.js';

test('tandem chaos: bad arguments exit 2 and start nothing', async () => {
  const write = process.stderr.write;
  const errors: string[] = [];
  process.stderr.write = ((chunk: string) => {
    errors.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    assert.equal(await run(['node', 'tandem', 'chaos', '--voters', '4']), 2);
    assert.equal(await run(['node', 'tandem', 'chaos', '--faults', 'kill,flood']), 2);
    assert.equal(await run(['node', 'tandem', 'chaos', '--time', '60']), 2);
    assert.equal(await run(['node', 'tandem', 'chaos', '--net', 'wifi']), 2);
    assert.equal(await run(['node', 'tandem', 'chaos', '--wal-mirror', 'maybe']), 2);
    assert.equal(await run(['node', 'tandem', 'chaos', '--standbys', '99']), 2);
    assert.equal(await run(['node', 'tandem', 'chaos', '--standby-mode', 'lukewarm']), 2);
  } finally {
    process.stderr.write = write;
  }
  assert.match(errors.join(''), /--voters: expected an odd number/);
  assert.match(errors.join(''), /unknown fault kind 'flood'/);
  assert.match(errors.join(''), /add a unit/);
  assert.match(errors.join(''), /--net: expected kernel, transport or auto, got wifi/);
  assert.match(errors.join(''), /--wal-mirror: expected on or off, got maybe/);
  assert.match(errors.join(''), /--standbys: expected an integer between 0 and 8, got 99/);
  assert.match(errors.join(''), /--standby-mode: expected hot, warm or cold, got lukewarm/);
});

test('testMode.faultInjection: off by default; file, environment or flag turn it on', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-chaos-cli-'));
  try {
    const file = join(dir, 'n1.yaml');
    writeFileSync(file, 'name: n1\n');
    assert.equal(loadConfig({ file, env: {} }).testMode.faultInjection, false);
    writeFileSync(join(dir, 'n2.yaml'), 'name: n2\ntestMode: { faultInjection: true }\n');
    assert.equal(loadConfig({ file: join(dir, 'n2.yaml'), env: {} }).testMode.faultInjection, true);
    const env = { TANDEM_TEST_MODE_FAULT_INJECTION: 'true' };
    assert.equal(loadConfig({ file, env }).testMode.faultInjection, true);
    const flags = { testModeFaultInjection: true };
    assert.equal(loadConfig({ file, env: {}, flags }).testMode.faultInjection, true);
    assert.throws(
      () => loadConfig({ file, env: { TANDEM_TEST_MODE_FAULT_INJECTION: 'yes' } }),
      /testMode\.faultInjection: expected true or false/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
