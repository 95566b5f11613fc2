/**
 * The cluster secret in the config (src/cli/config.ts): inline or from a file (the file's path
 * from YAML, the environment or a flag), exactly one of them, a length that is not a guess, and
 * never the secret's text in an error.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ConfigError, loadConfig, readClusterSecret } from '../../src/cli/config.js';

const dir = mkdtempSync(join(tmpdir(), 'tandem-secret-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = 'c0ffee-0123456789abcdef-secret';

function configFile(yaml: string): string {
  const file = join(dir, `n${Math.random().toString(16).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

test('inline secret, or a file (trailing newline trimmed) from YAML, environment or flag', () => {
  const inline = loadConfig({
    file: configFile(`name: n1\ncluster: { secret: ${SECRET} }\n`),
    env: {},
  });
  assert.equal(readClusterSecret(inline), SECRET);

  writeFileSync(join(dir, 'cluster.secret'), `${SECRET}\n`);
  chmodSync(join(dir, 'cluster.secret'), 0o600);
  const fromFile = loadConfig({
    file: configFile('name: n1\ncluster: { secretFile: cluster.secret }\n'),
    env: {},
  });
  assert.equal(fromFile.cluster.secretFile, join(dir, 'cluster.secret'));
  assert.equal(readClusterSecret(fromFile), SECRET);

  const fromEnv = loadConfig({
    file: configFile('name: n1\n'),
    env: { TANDEM_CLUSTER_SECRET_FILE: 'cluster.secret' },
    cwd: dir,
  });
  assert.equal(readClusterSecret(fromEnv), SECRET);
  const fromFlag = loadConfig({
    file: configFile('name: n1\n'),
    env: {},
    flags: { 'cluster-secret-file': join(dir, 'cluster.secret') },
  });
  assert.equal(readClusterSecret(fromFlag), SECRET);
});

test('missing, both, too short, unreadable: errors that name the option, never the secret', () => {
  const none = loadConfig({ file: configFile('name: n1\n'), env: {} });
  assert.throws(() => readClusterSecret(none), /cluster\.secret is required.*cluster\.secretFile/s);

  assert.throws(
    () =>
      loadConfig({
        file: configFile(`name: n1\ncluster: { secret: ${SECRET}, secretFile: x }\n`),
        env: {},
        checkFiles: false,
      }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /cluster\.secretFile: set cluster\.secret or cluster\.secretFile, not both/.test(e.message),
  );
  assert.throws(
    () => loadConfig({ file: configFile('name: n1\ncluster: { secret: tandem-dev }\n'), env: {} }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /cluster\.secret: .*got 10 bytes/.test(e.message) &&
      !/tandem-dev/.test(e.message),
  );
  writeFileSync(join(dir, 'short.secret'), 'shortsecret\n');
  const short = loadConfig({
    file: configFile('name: n1\ncluster: { secretFile: short.secret }\n'),
    env: {},
  });
  assert.throws(
    () => readClusterSecret(short),
    (e: unknown) =>
      /cluster\.secretFile: .*got 11 bytes/.test((e as Error).message) &&
      !/shortsecret/.test((e as Error).message),
  );
  assert.throws(
    () => loadConfig({ file: configFile('name: n1\ncluster: { secretFile: nowhere }\n'), env: {} }),
    (e: unknown) => e instanceof ConfigError && /cluster\.secretFile: cannot read/.test(e.message),
  );
});
