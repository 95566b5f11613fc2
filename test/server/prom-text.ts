/**
 * A small, strict parser of the Prometheus text exposition format (version 0.0.4), for tests:
 * it throws on anything a Prometheus server would reject or that is suspicious in a stable
 * interface — a malformed line, a sample before its family's TYPE, a family split in two, a
 * duplicate series, a sample name that does not belong to its family's type, a histogram whose
 * buckets are not cumulative or do not end in +Inf = _count.
 */

export type PromType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PromFamily {
  readonly name: string;
  readonly type: PromType;
  help: string | null;
  readonly samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly PromType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];
/** Lines of one exposition this parser accepts (a member has a few hundred). */
const LINES_MAX = 20_000;

export function parsePromText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const series = new Set<string>();
  const helpBeforeType = new Map<string, string>();
  let current: PromFamily | null = null;
  const lines = text.split('\n');
  if (lines.length > LINES_MAX) throw new Error(`more than ${LINES_MAX} lines`);
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition must end in \\n');
  lines.forEach((line, i) => {
    const where = `line ${i + 1} '${line}'`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m === null) return; // a plain comment
      const [, keyword, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name at ${where}`);
      if (keyword === 'TYPE') {
        if (!TYPES.includes(rest as PromType)) throw new Error(`bad type at ${where}`);
        if (families.has(name)) throw new Error(`second TYPE for ${name} at ${where}`);
        current = {
          name,
          type: rest as PromType,
          help: helpBeforeType.get(name) ?? null,
          samples: [],
        };
        helpBeforeType.delete(name);
        families.set(name, current);
      } else {
        const f = families.get(name);
        if (f?.help != null || helpBeforeType.has(name)) {
          throw new Error(`second HELP for ${name} at ${where}`);
        }
        // HELP before TYPE is prom-client's order: kept for the TYPE that follows.
        if (f === undefined) helpBeforeType.set(name, rest);
        else f.help = rest;
      }
      return;
    }
    const sample = parseSample(line, where);
    const family = familyOf(sample.name, families);
    if (family === null) throw new Error(`sample before any TYPE of its family at ${where}`);
    if (family !== current) throw new Error(`family ${family.name} split at ${where}`);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (series.has(key)) throw new Error(`duplicate series at ${where}`);
    series.add(key);
    family.samples.push(sample);
  });
  if (helpBeforeType.size > 0) throw new Error(`HELP without TYPE: ${[...helpBeforeType.keys()]}`);
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function familyOf(sampleName: string, families: Map<string, PromFamily>): PromFamily | null {
  const exact = families.get(sampleName);
  if (exact !== undefined && exact.type !== 'histogram' && exact.type !== 'summary') return exact;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sampleName.endsWith(suffix)) continue;
    const f = families.get(sampleName.slice(0, -suffix.length));
    if (f === undefined) continue;
    if (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket')) return f;
  }
  if (exact?.type === 'summary') return exact; // quantile samples
  return null;
}

function parseSample(line: string, where: string): PromSample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
  if (m === null) throw new Error(`malformed sample at ${where}`);
  const [, name, labelText, valueText] = m as unknown as [
    string,
    string,
    string | undefined,
    string,
  ];
  return { name, labels: parseLabels(labelText ?? '', where), value: parseValue(valueText, where) };
}

/** As Prometheus reads it (Go's ParseFloat): Inf and NaN in any case (prom-client writes Nan). */
function parseValue(text: string, where: string): number {
  const special = text.toLowerCase();
  if (special === '+inf' || special === 'inf') return Number.POSITIVE_INFINITY;
  if (special === '-inf') return Number.NEGATIVE_INFINITY;
  if (special === 'nan') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    throw new Error(`bad value '${text}' at ${where}`);
  }
  return Number(text);
}

function parseLabels(text: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  if (text === '') return labels;
  let i = 1; // after '{'
  const end = text.length - 1; // the '}'
  while (i < end) {
    const eq = text.indexOf('=', i);
    if (eq === -1) throw new Error(`bad labels at ${where}`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new Error(`bad label name '${name}' at ${where}`);
    if (name in labels) throw new Error(`label ${name} twice at ${where}`);
    if (text[eq + 1] !== '"') throw new Error(`unquoted label value at ${where}`);
    let value = '';
    let j = eq + 2;
    for (; j < end && text[j] !== '"'; j++) {
      if (text[j] !== '\\') {
        value += text[j];
        continue;
      }
      const next = text[++j];
      if (next === 'n') value += '\n';
      else if (next === '\\' || next === '"') value += next;
      else throw new Error(`bad escape in a label value at ${where}`);
    }
    if (text[j] !== '"') throw new Error(`unterminated label value at ${where}`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i++;
    else if (i !== end) throw new Error(`expected ',' or '}' at ${where}`);
  }
  return labels;
}

/** Per label set (le aside): buckets cumulative, le increasing, +Inf last and equal to _count. */
function checkHistogram(f: PromFamily): void {
  const groups = new Map<string, { le: number; value: number }[]>();
  const counts = new Map<string, number>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    if (s.name.endsWith('_bucket')) {
      if (le === undefined) throw new Error(`${s.name} without le`);
      const list = groups.get(key) ?? [];
      list.push({ le: parseValue(le, s.name), value: s.value });
      groups.set(key, list);
    } else if (s.name.endsWith('_count')) counts.set(key, s.value);
  }
  for (const [key, buckets] of groups) {
    for (let i = 1; i < buckets.length; i++) {
      if (buckets[i]!.le <= buckets[i - 1]!.le) throw new Error(`${f.name}: le not increasing`);
      if (buckets[i]!.value < buckets[i - 1]!.value) {
        throw new Error(`${f.name}: buckets not cumulative`);
      }
    }
    const last = buckets[buckets.length - 1]!;
    if (last.le !== Number.POSITIVE_INFINITY) throw new Error(`${f.name}: no +Inf bucket`);
    if (counts.get(key) !== last.value) throw new Error(`${f.name}: +Inf bucket != _count`);
  }
}

/** The one sample of `name` with exactly these labels, or undefined when it is absent. */
export function findSample(
  families: Map<string, PromFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want) {
        return s.value;
      }
    }
  }
  return undefined;
}

/** The one sample of `name` with exactly these labels (throws if absent). */
export function sampleValue(
  families: Map<string, PromFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const value = findSample(families, name, labels);
  if (value === undefined) {
    throw new Error(`no sample ${name}${JSON.stringify(Object.entries(labels).sort())}`);
  }
  return value;
}
