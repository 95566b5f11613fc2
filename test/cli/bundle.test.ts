/**
 * The CLI users run is the bundle (`npm run build` makes dist/bundle/ with tools/bundle-cli.mjs;
 * bin/tandem.js runs it). Most tests run the sources under tsx, so these check the bundle itself:
 * what it still imports at run time, and that a member started from it serves a real client.
 * They need the build (`npm run build`; CI builds before it tests).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { REPO_DIR, TANDEM_BIN } from '../../src/cli/local-cluster.js';
import { oneMemberBase, type SpawnedMember, spawnMemberUntil } from './one-member.js';

const BUNDLE_DIR = join(REPO_DIR, 'dist', 'bundle');
/** Pure-JavaScript packages the bundle carries inside it (tools/bundle-cli.mjs, INLINED). */
const INLINED = ['zod', 'yaml', 'commander'];
/** Spawn to serving from the bundle on a loaded 2-core machine: generous. */
const SERVE_WITHIN_MS = 30_000;
const EXIT_WITHIN_MS = 20_000;

function assertBuilt(): void {
  assert.ok(
    existsSync(join(BUNDLE_DIR, 'main.js')),
    `${BUNDLE_DIR}/main.js is missing: run npm run build first`,
  );
}

/** `@scope/name` or `name` of a bare specifier. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Every bare module specifier the bundle's files import or require at run time. */
function runtimeImports(): Set<string> {
  const found = new Set<string>();
  // esbuild writes static imports one statement per line; the specifier pattern keeps text in
  // string literals (an error message's "from ...") out.
  const name = '((?:@[\\w.-]+/)?\\w[\\w.-]*(?:/[\\w./-]+)?|node:[\\w/]+)';
  const forms = [
    new RegExp(`^\\s*(?:import|export)\\b[^;]*?\\bfrom\\s*"${name}"`, 'gm'),
    new RegExp(`^\\s*import\\s*"${name}"`, 'gm'),
    new RegExp(`\\bimport\\s*\\(\\s*"${name}"\\s*\\)`, 'g'),
    new RegExp(`\\b(?:__require|require)\\s*\\(\\s*"${name}"\\s*\\)`, 'g'),
  ];
  for (const file of readdirSync(BUNDLE_DIR)) {
    if (!file.endsWith('.js')) continue;
    const text = readFileSync(join(BUNDLE_DIR, file), 'utf8');
    for (const form of forms) for (const match of text.matchAll(form)) found.add(match[1]!);
  }
  return found;
}

test('the bundle inlines zod, yaml and commander, and imports at run time only built-ins and runtime dependencies', () => {
  assertBuilt();
  const packageJson = JSON.parse(readFileSync(join(REPO_DIR, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const imports = runtimeImports();
  // The scan finds imports at all: the member's storage needs lmdb from node_modules.
  assert.ok(imports.has('lmdb'), [...imports].join(', '));
  for (const specifier of imports) {
    if (specifier.startsWith('node:')) continue;
    const name = packageOf(specifier);
    assert.ok(!INLINED.includes(name), `${specifier} is imported at run time, not inlined`);
    // A bare built-in (esbuild may drop the node: prefix of a CommonJS require).
    if (builtinModules.includes(specifier)) continue;
    // A devDependency would be missing from a production install (npm ci --omit=dev).
    assert.ok(
      name in packageJson.dependencies,
      `the bundle imports ${specifier}, which is not a dependency in package.json`,
    );
    assert.ok(existsSync(join(REPO_DIR, 'node_modules', name, 'package.json')), name);
  }
});

test('a member started by bin/tandem.js (the bundle) serves an etcd client, and a restart of it keeps the data', {
  timeout: 2 * (SERVE_WITHIN_MS + EXIT_WITHIN_MS) + 20_000,
}, async () => {
  assertBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bundle-test-'));
  try {
    const config = join(dir, 'node.yaml');
    const { yaml, clientPort } = await oneMemberBase(dir);
    writeFileSync(config, `${yaml}cluster: { secret: bundle-test-secret-0123456789 }\n`);
    for (const run of ['new', 'restarted']) {
      const member = await startMember(config);
      const etcd = new Etcd3({ hosts: `127.0.0.1:${clientPort}` });
      try {
        if (run === 'new') await etcd.put('bundle/key').value('from the bundle');
        assert.equal(await etcd.get('bundle/key').string(), 'from the bundle', run);
      } finally {
        etcd.close();
        await member.stop();
      }
      assert.equal(member.exitCode(), 0, `${run}: ${member.stderr()}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Spawns `node bin/tandem.js start` and waits for its role to be confirmed (it serves then). */
async function startMember(config: string): Promise<SpawnedMember> {
  const { found, member } = await spawnMemberUntil(
    [TANDEM_BIN, 'start', '--config', config],
    (line) => line.msg === 'role confirmed with the leader',
    SERVE_WITHIN_MS,
    EXIT_WITHIN_MS,
  );
  if (!found) {
    await member.stop();
    assert.fail(`the member did not serve within ${SERVE_WITHIN_MS} ms: ${member.stderr()}`);
  }
  return member;
}
