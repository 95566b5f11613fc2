/**
 * The CLI users run is the bundle (`npm run build` makes dist/bundle/main.cjs with
 * tools/bundle-cli.mjs; bin/tandem.js runs it with a V8 code cache). Most tests run the sources
 * under tsx, so these check the bundle itself: what it still imports at run time, that a member
 * started from it serves a real client, and how the code cache is made, used and refused.
 * They need the build (`npm run build`; CI builds before it tests).
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
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
    existsSync(join(BUNDLE_DIR, 'main.cjs')),
    `${BUNDLE_DIR}/main.cjs is missing: run npm run build first`,
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
  // A CommonJS bundle: require() for what loads with the module, import() for what loads on
  // first use. The specifier pattern keeps other text in string literals out.
  const name = '((?:@[\\w.-]+/)?\\w[\\w.-]*(?:/[\\w./-]+)?|node:[\\w/]+)';
  const forms = [
    new RegExp(`\\bimport\\s*\\(\\s*"${name}"\\s*\\)`, 'g'),
    new RegExp(`\\b(?:__require|require)\\s*\\(\\s*"${name}"\\s*\\)`, 'g'),
  ];
  for (const file of readdirSync(BUNDLE_DIR)) {
    if (!file.endsWith('.cjs')) continue;
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

test('a member started by bin/tandem.js (the bundle) serves an etcd client and keeps its data across restarts; the code cache is written by the first run, used by the next, refused and rewritten when damaged', {
  timeout: 5 * (SERVE_WITHIN_MS + EXIT_WITHIN_MS) + 20_000,
}, async () => {
  assertBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bundle-test-'));
  // Its own cache directory: other tests start members from the same bundle meanwhile.
  const cacheDir = join(dir, 'code-cache');
  mkdirSync(cacheDir);
  const startCaches = (): string[] =>
    readdirSync(cacheDir).filter((name) => name.endsWith('.start.v8cache'));
  try {
    const config = join(dir, 'node.yaml');
    const { yaml, clientPort } = await oneMemberBase(dir);
    writeFileSync(config, `${yaml}cluster: { secret: bundle-test-secret-0123456789 }\n`);
    // A cache of an earlier build of the bundle (another CRC): the first write prunes it.
    writeFileSync(join(cacheDir, 'main.cjs.0-1.start.v8cache'), 'stale');
    const runs = [
      { run: 'new', cache: 'absent' },
      { run: 'restarted', cache: 'used' },
      { run: 'restarted, cache damaged', cache: 'rejected', damage: true },
      { run: 'restarted, cache rewritten', cache: 'used' },
    ];
    for (const { run, cache, damage } of runs) {
      if (damage === true) {
        const [name] = startCaches();
        // The right name and length, wrong contents: V8 must refuse it.
        const path = join(cacheDir, name!);
        writeFileSync(path, Buffer.alloc(readFileSync(path).length, 0x5a));
      }
      const member = await startMember(config, { TANDEM_CODE_CACHE_DIR: cacheDir });
      const etcd = new Etcd3({ hosts: `127.0.0.1:${clientPort}` });
      try {
        if (run === 'new') await etcd.put('bundle/key').value('from the bundle');
        assert.equal(await etcd.get('bundle/key').string(), 'from the bundle', run);
      } finally {
        etcd.close();
        await member.stop();
      }
      assert.equal(member.exitCode(), 0, `${run}: ${member.stderr()}`);
      const serving = member.lines.find((line) => line.msg === 'tandem member serving');
      assert.equal(serving?.codeCache, cache, run);
      // Written by the run (at the latest as it exits), one per command and bundle.
      assert.equal(startCaches().length, 1, `${run}: ${readdirSync(cacheDir).join(', ')}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a code cache that cannot be written is no error, and TANDEM_CODE_CACHE=off runs without one', {
  timeout: 2 * (SERVE_WITHIN_MS + EXIT_WITHIN_MS) + 20_000,
}, async () => {
  assertBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bundle-test-'));
  try {
    const config = join(dir, 'node.yaml');
    const { yaml } = await oneMemberBase(dir);
    writeFileSync(config, `${yaml}cluster: { secret: bundle-test-secret-0123456789 }\n`);
    const cases: { env: Record<string, string>; cache: string }[] = [
      // A directory that does not exist stands for one the user may not write.
      { env: { TANDEM_CODE_CACHE_DIR: join(dir, 'missing', 'dir') }, cache: 'absent' },
      { env: { TANDEM_CODE_CACHE: 'off', TANDEM_CODE_CACHE_DIR: dir }, cache: 'off' },
    ];
    for (const { env, cache } of cases) {
      const member = await startMember(config, env);
      await member.stop();
      assert.equal(member.exitCode(), 0, `${cache}: ${member.stderr()}`);
      const serving = member.lines.find((line) => line.msg === 'tandem member serving');
      assert.equal(serving?.codeCache, cache);
    }
    assert.deepEqual(
      readdirSync(dir).filter((name) => name.includes('v8cache')),
      [],
      'TANDEM_CODE_CACHE=off writes no cache',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Spawns `node bin/tandem.js start` and waits for its role to be confirmed (it serves then). */
async function startMember(config: string, env: Record<string, string>): Promise<SpawnedMember> {
  const { found, member } = await spawnMemberUntil(
    [TANDEM_BIN, 'start', '--config', config],
    (line) => line.msg === 'role confirmed with the leader',
    SERVE_WITHIN_MS,
    EXIT_WITHIN_MS,
    env,
  );
  if (!found) {
    await member.stop();
    assert.fail(`the member did not serve within ${SERVE_WITHIN_MS} ms: ${member.stderr()}`);
  }
  return member;
}
