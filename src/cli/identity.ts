/**
 * Who a member is: its id, its cluster's id, and the founders of its cluster.
 *
 * Founders of a new cluster compute every id from the cluster token and the member names (the
 * same on every founder: their configs must agree on names, addresses, roles and modes). A
 * member joining an existing cluster (after `member add`) learns its ids from the leader's first
 * handshake, once the leader proved it holds the cluster secret, and records them in
 * `identity.json`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusterIdOf, memberIdOf } from '../cluster/ids.js';
import type { Founder } from '../cluster/registry.js';
import type { NodeId } from '../raft/types.js';
import { NodeFileSystem, writeFileAtomic } from '../storage/index.js';
import type { ClusterSecret } from '../transport/handshake.js';
import { awaitDialedIdentity } from '../transport/join.js';
import type { TransportLogger } from '../transport/logger.js';
import { parseHostPort, toUrl } from './addresses.js';
import type { TandemConfig } from './config.js';

/** Where a joined member keeps the ids the cluster gave it (founders compute theirs). */
export const IDENTITY_FILE = 'identity.json';
/** How often a joining member says what it is waiting for. */
const JOIN_WAIT_LOG_INTERVAL_MS = 10_000;

export interface Identity {
  readonly clusterId: number;
  readonly memberId: NodeId;
}

/** The founding members as this config describes them; [0] is this member. */
export function foundersOf(config: TandemConfig): Founder[] {
  const token = config.cluster.token;
  return [
    {
      name: config.name,
      addresses: [config.listen.peer],
      role: config.role,
      standbyMode: config.redundancy.standby.mode,
    },
    ...config.peers.map((p) => ({
      name: p.name,
      addresses: [...p.addresses],
      role: p.role,
      standbyMode: p.standbyMode,
    })),
  ].map((f) => ({
    id: memberIdOf(token, f.name),
    name: f.name,
    peerUrls: f.addresses.map((a) => toUrl(a, config.tls.peer !== null)),
    clientUrls: [] as string[],
    role: f.role,
    standbyMode: f.standbyMode,
  }));
}

/** This member's ids: a joined member's recorded or learned ones, else a founder's. */
export async function resolveIdentity(
  config: TandemConfig,
  founders: readonly Founder[],
  logger: TransportLogger,
  secret: ClusterSecret,
): Promise<Identity> {
  const joined =
    config.cluster.state === 'existing' ? await joinedIdentity(config, logger, secret) : null;
  return (
    joined ?? {
      clusterId: clusterIdOf(
        config.cluster.token,
        founders.map((f) => f.id),
      ),
      memberId: founders[0]!.id,
    }
  );
}

function tokenDigest(token: string): string {
  return createHash('sha256').update('tandem-token\0').update(token).digest('hex');
}

/**
 * The identity of a member of an existing cluster: recorded in `identity.json` once joined;
 * for a fresh data directory, learned from the leader that dials this member after `member add`.
 * Null when the data directory is a founder's (a WAL but no identity file): a founder's ids are
 * computed, and the WAL checks them.
 */
async function joinedIdentity(
  config: TandemConfig,
  logger: TransportLogger,
  secret: ClusterSecret,
): Promise<Identity | null> {
  const file = join(config.dataDir, IDENTITY_FILE);
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as {
      tokenSha256: string;
      clusterId: string;
      memberId: string;
    };
    if (saved.tokenSha256 !== tokenDigest(config.cluster.token)) {
      throw new Error(
        `data directory ${config.dataDir} belongs to another cluster: it joined a cluster with a different cluster.token`,
      );
    }
    return {
      clusterId: Number.parseInt(saved.clusterId, 16),
      memberId: Number.parseInt(saved.memberId, 16),
    };
  }
  const walDir = join(config.dataDir, 'wal');
  if (existsSync(walDir) && readdirSync(walDir).length > 0) return null;
  const peerUrl = toUrl(config.listen.peer, config.tls.peer !== null);
  const say = (): void =>
    logger.info(
      { peerUrl },
      'joining: waiting for the leader to dial (run member add for this peer URL)',
    );
  const waiting = setInterval(say, JOIN_WAIT_LOG_INTERVAL_MS);
  say();
  let dialed: Awaited<ReturnType<typeof awaitDialedIdentity>>;
  try {
    dialed = await awaitDialedIdentity({
      listen: parseHostPort(config.listen.peer),
      secret,
      logger,
      ...(config.tls.peer === null
        ? {}
        : {
            tls: {
              caFile: config.tls.peer.ca,
              certFile: config.tls.peer.cert,
              keyFile: config.tls.peer.key,
            },
          }),
    });
  } finally {
    clearInterval(waiting);
  }
  const identity = { clusterId: Number.parseInt(dialed.clusterId, 16), memberId: dialed.localId };
  if (!Number.isSafeInteger(identity.clusterId) || identity.clusterId <= 0) {
    throw new Error(`joining: the leader sent an invalid cluster id '${dialed.clusterId}'`);
  }
  await writeFileAtomic(
    new NodeFileSystem(),
    config.dataDir,
    IDENTITY_FILE,
    Buffer.from(
      JSON.stringify({
        tokenSha256: tokenDigest(config.cluster.token),
        clusterId: dialed.clusterId,
        memberId: dialed.localId.toString(16),
      }),
    ),
  );
  logger.info(
    {
      clusterId: dialed.clusterId,
      memberId: dialed.localId.toString(16),
      from: dialed.from.toString(16),
    },
    'joining: the cluster named this member',
  );
  return identity;
}
