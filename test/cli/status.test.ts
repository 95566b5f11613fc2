/**
 * `tandem status` (src/cli/status.ts) against admin endpoints served on 127.0.0.1 by this test:
 * a leader voter, a warm standby that reports its staleness, an older member without the field,
 * and an endpoint nobody listens on. Checks the rows and the STALE column of the table.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../../src/cli/local-net.js';
import { formatStatusTable, queryStatus } from '../../src/cli/status.js';

function base(name: string, memberId: string, isLeader: boolean) {
  return {
    name,
    memberId,
    leader: '1',
    isLeader,
    term: 4,
    commitIndex: 50,
    appliedIndex: isLeader ? 50 : 30,
    revision: 9,
    zone: 'z',
    members: [{ id: '1', name: 'n1', isLearner: false }],
  };
}

const STATUSES: Record<string, unknown> = {
  n1: { ...base('n1', '1', true), role: 'voter', standbyStalenessSeconds: null },
  n4: {
    ...base('n4', '4', false),
    role: 'standby',
    standbyMode: 'warm',
    standbyStalenessSeconds: 12.7,
  },
  // A member of an older version: no standbyStalenessSeconds field at all.
  n5: { ...base('n5', '5', false), role: 'standby', standbyMode: 'cold' },
};

describe('tandem status: standby staleness', () => {
  const servers: Server[] = [];
  const endpoints: string[] = [];

  before(async () => {
    for (const name of Object.keys(STATUSES)) {
      const server = createServer((req, res) => {
        res.writeHead(req.url === '/status' ? 200 : 404, { 'content-type': 'application/json' });
        res.end(JSON.stringify(req.url === '/status' ? STATUSES[name] : { error: 'not found' }));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      endpoints.push(`127.0.0.1:${(server.address() as { port: number }).port}`);
    }
    endpoints.push(`127.0.0.1:${await freePort()}`); // nobody listens
  });

  after(async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  test('rows carry the staleness a member reports, null otherwise', async () => {
    const rows = await queryStatus(endpoints);
    assert.deepEqual(
      rows.map((r) => [r.name, r.role, r.standbyStalenessSeconds, r.lag]),
      [
        ['n1', 'voter', null, 0],
        ['n4', 'standby', 12.7, 20],
        ['n5', 'standby', null, 20],
        ['?', 'unreachable', null, 0],
      ],
    );
  });

  test('the table has a STALE column: whole seconds for a standby that reports it, - else', async () => {
    const lines = formatStatusTable(await queryStatus(endpoints))
      .trimEnd()
      .split('\n');
    // Cells are padded to their column's width: a cell starts where its header does.
    const at = lines[0]!.indexOf(' STALE ') + 1;
    assert.ok(at > 0 && lines[0]!.slice(0, at).trimEnd().endsWith('LAG'), lines[0]);
    const stale = lines.slice(1, 4).map((l) => l.slice(at).split(' ')[0]);
    assert.deepEqual(stale, ['-', '12s', '-']);
  });
});
