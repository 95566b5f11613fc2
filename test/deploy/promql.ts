/**
 * TEST HARNESS: the metric names a PromQL expression reads, for checking that a dashboard asks
 * only for series a member exports. A small scanner, not a parser: string literals, label
 * matchers `{…}`, ranges and subqueries `[…]`, grouping clauses (`by (…)`, `on (…)`, …) and
 * Grafana variables are removed; what remains that looks like an identifier and is not a
 * function call, a keyword or a number is a metric name.
 */

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'and',
  'or',
  'unless',
  'inf',
  'nan',
]);
const GROUPING = /\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g;
/** An expression longer than this is not a dashboard query. */
const EXPRESSION_CHARS_MAX = 10_000;

export function metricNames(expression: string): string[] {
  if (expression.length > EXPRESSION_CHARS_MAX) throw new Error('expression too long');
  const stripped = expression
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(GROUPING, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  if (/[{}[\]"]/.test(stripped)) throw new Error(`unbalanced expression: ${expression}`);
  const names = new Set<string>();
  const identifier = /(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g;
  for (const m of stripped.matchAll(identifier)) {
    const name = m[1]!;
    if (m[2] !== undefined || KEYWORDS.has(name.toLowerCase())) continue; // a function call
    names.add(name);
  }
  return [...names].sort();
}

/** Every PromQL expression of a Grafana dashboard: panel targets (rows too) and variables. */
export function dashboardExpressions(dashboard: unknown): { where: string; expr: string }[] {
  const found: { where: string; expr: string }[] = [];
  const d = dashboard as {
    panels?: GrafanaPanel[];
    templating?: { list?: { name: string; query?: unknown; definition?: string }[] };
  };
  const visit = (panels: GrafanaPanel[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) found.push({ where: `${p.title} ${t.refId}`, expr: t.expr });
      visit(p.panels);
    }
  };
  visit(d.panels);
  for (const v of d.templating?.list ?? []) {
    const q = v.query as { query?: string } | string | undefined;
    const text = typeof q === 'string' ? q : q?.query;
    if (text === undefined) continue;
    const inner = /^label_values\((.*),\s*\w+\)$/.exec(text.trim());
    if (inner !== null) found.push({ where: `variable ${v.name}`, expr: inner[1]! });
  }
  return found;
}

export interface GrafanaPanel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { h: number; w: number; x: number; y: number };
  readonly targets?: { expr: string; refId: string; legendFormat?: string }[];
  readonly panels?: GrafanaPanel[];
  readonly datasource?: { type: string; uid: string };
}
