/**
 * tandem/client's API docs (docs/api/, `npm run docs`: TypeDoc with typedoc-plugin-markdown,
 * tools/typedoc/typedoc.json) build without a warning, warnings being errors there: an export of
 * src/client/index.ts without a doc comment fails this test. And docs/api as committed is what
 * the build makes now: a changed signature or comment needs `npm run docs` in the same commit.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const TOOL_DIR = join(REPO, 'tools', 'typedoc');
const TYPEDOC = join(TOOL_DIR, 'node_modules', 'typedoc', 'bin', 'typedoc');
const COMMITTED = join(REPO, 'docs', 'api');
const TYPEDOC_TIMEOUT_MS = 600_000;
/** Files docs/api holds at most (a runaway output is a failure, not a slow diff). */
const DOC_FILES_MAX = 1_000;

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.set(relative(dir, path), readFileSync(path, 'utf8'));
      assert.ok(out.size <= DOC_FILES_MAX, `more than ${DOC_FILES_MAX} files under ${dir}`);
    }
  };
  walk(dir);
  return out;
}

test('the API docs build without warnings and docs/api is up to date', {
  timeout: TYPEDOC_TIMEOUT_MS + 30_000,
}, async () => {
  assert.ok(existsSync(TYPEDOC), `no TypeDoc at ${TYPEDOC}: run npm ci (workspace tools/typedoc)`);
  const out = mkdtempSync(join(tmpdir(), 'tandem-api-docs-'));
  try {
    try {
      await promisify(execFile)(
        process.execPath,
        [TYPEDOC, '--options', 'typedoc.json', '--out', out],
        { cwd: TOOL_DIR, timeout: TYPEDOC_TIMEOUT_MS, maxBuffer: 8 * 1024 * 1024 },
      );
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      assert.fail(
        `typedoc failed (warnings are errors):\n${e.stdout ?? ''}${e.stderr ?? e.message}`,
      );
    }
    const built = files(out);
    const committed = files(COMMITTED);
    assert.ok(
      built.has('README.md') && built.has('classes/Client.md'),
      'the docs have an index and Client',
    );
    assert.deepEqual([...committed.keys()].sort(), [...built.keys()].sort(), 'run npm run docs');
    for (const [path, text] of built) {
      assert.equal(committed.get(path), text, `docs/api/${path} is stale: run npm run docs`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
