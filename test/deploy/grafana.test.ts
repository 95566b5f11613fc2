/**
 * deploy/grafana/tandem.json: a Grafana dashboard for tandem's metrics. Here: its structure
 * (importable: a Prometheus data source input, unique panel ids, panels inside the 24-column
 * grid, every query panel with queries) and the PromQL scanner the live check relies on. That
 * every query names only series a real member exports is checked against running members in
 * test/integration/etcd-metrics.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { dashboardExpressions, type GrafanaPanel, metricNames } from './promql.js';

/** Grafana's placeholder for the data source chosen at import. */
const DATA_SOURCE_UID = ['$', '{DS_PROMETHEUS}'].join('');

export const DASHBOARD_PATH = new URL('../../deploy/grafana/tandem.json', import.meta.url);

describe('the PromQL scanner', () => {
  test('finds metric names, not functions, labels, keywords, durations or variables', () => {
    assert.deepEqual(
      metricNames(
        'histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{instance=~"$instance",grpc_type="unary"}[$__rate_interval])))',
      ),
      ['grpc_server_handling_seconds_bucket'],
    );
    assert.deepEqual(
      metricNames(
        'max by (name) (tandem_member_info{a="{b}"} * on (instance) group_left etcd_server_is_leader) == 1',
      ),
      ['etcd_server_is_leader', 'tandem_member_info'],
    );
    assert.deepEqual(
      metricNames('tandem_raft_commit_index - tandem_raft_applied_index offset 5m'),
      ['tandem_raft_applied_index', 'tandem_raft_commit_index'],
    );
    assert.deepEqual(metricNames('rate(x[5m]) / 1e9 > bool 0.5 or vector(1)'), ['x']);
    assert.throws(() => metricNames('rate(x{a="b"[5m])'), /unbalanced/);
  });

  test('collects every target, nested rows and label_values variables', () => {
    const found = dashboardExpressions({
      panels: [
        { title: 'a', targets: [{ expr: 'up', refId: 'A' }] },
        { title: 'r', panels: [{ title: 'b', targets: [{ expr: 'x', refId: 'A' }] }] },
      ],
      templating: {
        list: [{ name: 'i', query: { query: 'label_values(tandem_member_info, instance)' } }],
      },
    });
    assert.deepEqual(
      found.map((f) => f.expr),
      ['up', 'x', 'tandem_member_info'],
    );
  });
});

test('the dashboard is importable and laid out on the grid', () => {
  const d = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as {
    uid: string;
    title: string;
    schemaVersion: number;
    __inputs: { name: string; type: string; pluginId: string }[];
    panels: GrafanaPanel[];
    templating: { list: { name: string; type: string }[] };
  };
  assert.equal(d.uid, 'tandem-overview');
  assert.ok(d.schemaVersion >= 36);
  assert.deepEqual(
    d.__inputs.map((i) => [i.name, i.type, i.pluginId]),
    [['DS_PROMETHEUS', 'datasource', 'prometheus']],
  );
  assert.ok(d.templating.list.some((v) => v.name === 'instance' && v.type === 'query'));
  const ids = new Set<number>();
  let queries = 0;
  for (const p of d.panels) {
    assert.ok(!ids.has(p.id), `panel id ${p.id} once`);
    ids.add(p.id);
    const g = p.gridPos;
    assert.ok(g.x >= 0 && g.w >= 1 && g.x + g.w <= 24 && g.h >= 1 && g.y >= 0, p.title);
    if (p.type === 'row') continue;
    assert.ok(['timeseries', 'stat'].includes(p.type), `${p.title}: ${p.type}`);
    assert.deepEqual(p.datasource, { type: 'prometheus', uid: DATA_SOURCE_UID });
    assert.ok((p.targets ?? []).length >= 1, `${p.title} has a query`);
    for (const t of p.targets!) {
      assert.ok(metricNames(t.expr).length >= 1, `${p.title}: ${t.expr}`);
      assert.match(t.expr, /instance=~"\$instance"/, `${p.title} follows the member selector`);
      queries++;
    }
  }
  // Panels of one row never overlap.
  const cells = new Set<string>();
  for (const p of d.panels) {
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
        assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`);
        cells.add(`${x},${y}`);
      }
    }
  }
  assert.ok(queries >= 30, `${queries} queries`);
});
