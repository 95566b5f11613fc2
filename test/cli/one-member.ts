/**
 * For tests that run `tandem start` themselves: a one-member config, and the process with its log.
 * The config: its name, data directory and
 * listen addresses on ports free a moment ago, picked below the kernel's ephemeral range
 * (freePorts), where no outgoing connection takes one before the member binds it.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_DIR } from '../../src/cli/local-cluster.js';
import { freePorts } from '../../src/cli/local-net.js';

export interface OneMemberBase {
  /** The YAML up to and including `listen:`; append `cluster:` and the rest. */
  readonly yaml: string;
  readonly clientPort: number;
}

/** `adminPort`: a port the test chose (e.g. one it holds, to see the member fail on it). */
export async function oneMemberBase(dir: string, adminPort?: number): Promise<OneMemberBase> {
  const [clientPort, peerPort, freeAdmin] = await freePorts(3);
  const admin = adminPort ?? freeAdmin!;
  return {
    yaml: `name: n1\ndataDir: ${join(dir, 'data')}\nlisten:\n  client: 127.0.0.1:${clientPort}\n  peer: 127.0.0.1:${peerPort}\n  admin: 127.0.0.1:${admin}\n`,
    clientPort: clientPort!,
  };
}

/** A `tandem start` process a test spawned, with its JSON log lines read so far. */
export interface SpawnedMember {
  readonly lines: Record<string, unknown>[];
  stderr(): string;
  exitCode(): number | null;
  /** SIGTERM, then SIGKILL after `killAfterMs`; resolves once the process has exited. */
  stop(): Promise<void>;
}

/**
 * Spawns `node <args>` (a `tandem start`) and resolves once one of its log lines satisfies
 * `until` (found), or when `withinMs` pass or the process exits first (not found). `env`: added
 * to this process's environment.
 */
export async function spawnMemberUntil(
  args: readonly string[],
  until: (line: Record<string, unknown>) => boolean,
  withinMs: number,
  killAfterMs: number,
  env: Record<string, string> = {},
): Promise<{ found: boolean; member: SpawnedMember }> {
  const child = spawn(process.execPath, [...args], {
    cwd: REPO_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let pending = '';
  const found = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), withinMs);
    child.stdout.on('data', (d: Buffer) => {
      pending += d.toString();
      const complete = pending.split('\n');
      pending = complete.pop()!;
      for (const text of complete) {
        if (!text.startsWith('{')) continue;
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        if (until(line)) {
          clearTimeout(timer);
          resolve(true);
        }
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    await exited;
    clearTimeout(killer);
  };
  return {
    found,
    member: { lines, stderr: () => stderr, exitCode: () => child.exitCode, stop },
  };
}
