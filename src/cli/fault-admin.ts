/**
 * TEST ONLY: the admin API's `/faults` endpoint, registered only when the member runs with
 * `testMode.faultInjection: true` (flag `--fault-injection`). It drives the transport's fault
 * rules (src/transport/faults.ts), so that `tandem chaos` can partition and slow peer links
 * without root:
 *
 *   POST   /faults  {"links":[{"peer":"n2","dropRate":1},{"peer":"n3","delayMs":200}]}
 *   DELETE /faults  heals every link
 *   GET    /faults  {"links":[…],"dropped":12,"delayed":40}
 *   POST   /faults  {"disk":{"failNextSync":"EIO","pathIncludes":"wal"}}
 *   POST   /faults  {"disk":{"crashAfterBytes":1000}}   (a torn write, then a crashed disk)
 *
 * The disk fault arms the member's fault file system (src/storage/fault-fs.ts, in use only in
 * test mode): its next fsync of a matching path fails, as a dying disk's would. A member must
 * then stop (its WAL is poisoned: it may not acknowledge what it could not make durable), never
 * go on with a log it cannot trust; `tandem chaos` restarts it and checks nothing was lost.
 *
 * A rule is about this member's outbound messages to `peer` (a member name or hex id); a
 * symmetric partition is a rule on both sides. POST replaces the rule of each peer it names and
 * leaves the others. Rules live in memory: a restarted member starts healed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBoundedBody } from '../api/admin.js';
import type { NodeId } from '../raft/types.js';
import type { FaultyFileSystem, InjectedErrorCode } from '../storage/fault-fs.js';
import type { LinkFault } from '../transport/faults.js';
import type { TcpTransport } from '../transport/transport.js';

/** A /faults request body larger than this is refused (a few rules per peer at most). */
export const FAULTS_BODY_BYTES_MAX = 64 * 1024;
/** At most this many link rules in one request. */
export const FAULT_LINKS_MAX = 64;
/** A delay longer than this is a stopped link, not a slow one: use dropRate 1 instead. */
export const FAULT_DELAY_MS_MAX = 60_000;

export interface FaultLinkRule {
  readonly peer: string;
  readonly dropRate: number;
  readonly delayMs: number;
}

export interface FaultAdmin {
  /** Answers the request when it is for /faults; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

const DISK_ERROR_CODES: readonly InjectedErrorCode[] = ['EIO', 'ENOSPC'];

export function faultAdmin(
  transport: TcpTransport,
  members: () => readonly { readonly id: NodeId; readonly name: string }[],
  disk: FaultyFileSystem | null = null,
): FaultAdmin {
  const faults = transport.faults;
  if (faults === null) throw new Error('fault admin needs a transport with faultInjection');
  const rules = new Map<NodeId, FaultLinkRule>();

  const resolvePeer = (peer: string): NodeId | null => {
    const byName = members().find((m) => m.name === peer);
    if (byName !== undefined) return byName.id;
    if (!/^[0-9a-f]{1,13}$/i.test(peer)) return null;
    const id = Number.parseInt(peer, 16);
    return members().some((m) => m.id === id) ? id : null;
  };

  let diskArmed = 0;
  const applyDisk = (spec: unknown): string | null => {
    if (disk === null) return 'this member has no fault file system';
    const {
      failNextSync,
      pathIncludes = null,
      crashAfterBytes,
    } = (spec ?? {}) as Record<string, unknown>;
    if (crashAfterBytes !== undefined) {
      // A torn write: the write crossing this many more bytes lands a prefix, then every call
      // fails (ECRASHED) as in a crashed process; the member stops, a restart recovers.
      if (!Number.isSafeInteger(crashAfterBytes) || (crashAfterBytes as number) < 1) {
        return 'disk: crashAfterBytes must be a positive integer';
      }
      disk.crashAfterBytes(crashAfterBytes as number);
      diskArmed++;
      return null;
    }
    if (!DISK_ERROR_CODES.includes(failNextSync as InjectedErrorCode)) {
      return `disk: failNextSync must be one of ${DISK_ERROR_CODES.join(', ')}`;
    }
    if (pathIncludes !== null && typeof pathIncludes !== 'string') {
      return 'disk: pathIncludes must be a string';
    }
    disk.failNextSync(failNextSync as InjectedErrorCode, pathIncludes as string | null);
    diskArmed++;
    return null;
  };

  const apply = (body: unknown): string | null => {
    const diskSpec = (body as { disk?: unknown } | null)?.disk;
    if (diskSpec !== undefined) {
      const problem = applyDisk(diskSpec);
      if (problem !== null || (body as { links?: unknown }).links === undefined) return problem;
    }
    const links = (body as { links?: unknown } | null)?.links;
    if (!Array.isArray(links) || links.length > FAULT_LINKS_MAX) {
      return `expected {"links":[…]} with at most ${FAULT_LINKS_MAX} rules`;
    }
    const parsed: [NodeId, FaultLinkRule][] = [];
    for (const link of links as unknown[]) {
      const { peer, dropRate = 0, delayMs = 0 } = (link ?? {}) as Record<string, unknown>;
      if (typeof peer !== 'string') return 'each rule needs "peer": a member name or hex id';
      const id = resolvePeer(peer);
      if (id === null) return `unknown peer ${JSON.stringify(peer)}`;
      if (typeof dropRate !== 'number' || !(dropRate >= 0 && dropRate <= 1)) {
        return `peer ${peer}: dropRate must be a number in [0, 1]`;
      }
      if (!Number.isSafeInteger(delayMs) || (delayMs as number) < 0) {
        return `peer ${peer}: delayMs must be a non-negative integer`;
      }
      if ((delayMs as number) > FAULT_DELAY_MS_MAX) {
        return `peer ${peer}: delayMs must be at most ${FAULT_DELAY_MS_MAX}`;
      }
      parsed.push([id, { peer, dropRate, delayMs: delayMs as number }]);
    }
    for (const [id, rule] of parsed) {
      faults.set(id, { dropRate: rule.dropRate, delayMs: rule.delayMs } satisfies LinkFault);
      rules.set(id, rule);
    }
    return null;
  };

  const state = (): unknown => ({
    links: [...rules.values()],
    ...faults.counters(),
    ...(disk !== null && { diskFaultsArmed: diskArmed }),
  });

  return {
    handle(req, res) {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/faults') return false;
      if (req.method === 'GET') {
        reply(res, 200, state());
      } else if (req.method === 'DELETE') {
        faults.clearAll();
        rules.clear();
        reply(res, 200, state());
      } else if (req.method === 'POST') {
        readBoundedBody(req, res, FAULTS_BODY_BYTES_MAX).then(
          (text) => {
            if (text === null) return; // answered 413
            let body: unknown;
            try {
              body = JSON.parse(text);
            } catch {
              return reply(res, 400, { error: 'body is not JSON' });
            }
            const problem = apply(body);
            if (problem !== null) return reply(res, 400, { error: problem });
            reply(res, 200, state());
          },
          () => reply(res, 400, { error: 'the request body could not be read' }),
        );
      } else {
        reply(res, 405, { error: 'GET, POST or DELETE' });
      }
      return true;
    },
  };
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
