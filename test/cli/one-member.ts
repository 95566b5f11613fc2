/**
 * A one-member config for tests that run `tandem start` themselves: its name, data directory and
 * listen addresses on ports free a moment ago, picked below the kernel's ephemeral range
 * (freePorts), where no outgoing connection takes one before the member binds it.
 */
import { join } from 'node:path';
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
