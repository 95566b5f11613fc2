/**
 * Members of a chaos cluster do not inherit the runner's TANDEM_* variables: a member rejects
 * unknown ones, so TANDEM_CHAOS_KEEP=1 (run.test.ts) once made every member exit at start.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memberEnv } from '../../src/cli/local-cluster.js';

test('memberEnv drops TANDEM_* and keeps the rest', () => {
  const env = memberEnv({
    PATH: '/bin',
    TANDEM_CHAOS_KEEP: '1',
    TANDEM_CLIENT_PORT: '1',
    HOME: '/h',
  });
  assert.deepEqual(env, { PATH: '/bin', HOME: '/h' });
});
