/**
 * The source tree keeps the shape DESIGN.md "Architecture" draws: no file import cycle anywhere
 * under src/ (every relative import counts, `import type` and `import()` included), and each
 * layer imports only the layers it may. A cycle or a forbidden import fails here, with the files
 * named, unless KNOWN_EXCEPTIONS lists it; an entry that no longer matches anything fails too,
 * so the list only shrinks.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * Known exceptions, each to be deleted by the change that removes it. Add none lightly: a new
 * cycle or layer breach is better fixed (give the shared piece a home below both files).
 */
const KNOWN_EXCEPTIONS: readonly KnownException[] = [];

type KnownException =
  | { readonly cycle: readonly string[] }
  | { readonly from: string; readonly to: string };

/** Files under `from` must import nothing under any of `forbidden` (repo-relative prefixes). */
interface LayerRule {
  readonly from: readonly string[];
  readonly forbidden: readonly string[];
  readonly why: string;
}

const PURE = ['src/raft/', 'src/cluster/', 'src/kv/', 'src/util/', 'src/routing/'];

const LAYER_RULES: readonly LayerRule[] = [
  {
    from: PURE,
    forbidden: [
      'src/io/',
      'src/transport/',
      'src/server/',
      'src/api/',
      'src/cli/',
      'src/chaos/',
      'src/sim/',
      'src/storage/',
    ],
    why: 'pure layers: no I/O, nothing above them',
  },
  {
    from: ['src/server/'],
    forbidden: ['src/api/', 'src/cli/', 'src/transport/', 'src/chaos/', 'src/sim/'],
    why: 'the member runs on src/io interfaces; api depends on server, never the reverse',
  },
  {
    from: ['src/'],
    forbidden: ['test/', 'bench/'],
    why: 'shipped code never depends on tests or benchmarks',
  },
];

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---------------------------------------------------------------------------------------------
// The import graph: repo-relative posix paths, each file to the files it imports.

type Graph = ReadonlyMap<string, readonly string[]>;

/** Static imports and re-exports (line-anchored, so commented-out ones do not count). */
const STATIC_FROM =
  /^\s*(?:import|export)\s+(?:type\s+)?(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+)\s+from\s*['"]([^'"]+)['"]/gm;
/** `import './x.js'` for its side effects. */
const SIDE_EFFECT = /^\s*import\s*['"]([^'"]+)['"]/gm;
/** `await import('./x.js')` and `import('./x.js').Type`. */
const DYNAMIC = /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;

function specifiers(source: string): string[] {
  const found: string[] = [];
  for (const pattern of [STATIC_FROM, SIDE_EFFECT, DYNAMIC]) {
    for (const match of source.matchAll(pattern)) found.push(match[1]!);
  }
  return found;
}

function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const child = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...sourceFiles(child));
    else if (entry.name.endsWith('.ts')) files.push(child);
  }
  return files.sort();
}

/** The file a relative specifier names: `./x.js` is the source `./x.ts`; null when none exists. */
function resolve(from: string, specifier: string): string | null {
  const target = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  const source = target.replace(/\.js$/, '.ts');
  if (existsSync(path.join(ROOT, source))) return source;
  return existsSync(path.join(ROOT, target)) ? target : null;
}

function importGraph(dir: string): Graph {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(dir)) {
    const targets: string[] = [];
    for (const specifier of specifiers(readFileSync(path.join(ROOT, file), 'utf8'))) {
      if (!specifier.startsWith('.')) continue; // packages and node: builtins
      const target = resolve(file, specifier);
      assert.ok(target !== null, `${file}: cannot resolve import '${specifier}'`);
      if (!targets.includes(target)) targets.push(target);
    }
    graph.set(file, targets);
  }
  return graph;
}

/**
 * Every cycle as its strongly connected component (Tarjan): the files, sorted, of each component
 * of more than one file, and each file that imports itself. Sorted by first file.
 */
function importCycles(graph: Graph): string[][] {
  const order = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    order.set(v, order.size);
    low.set(v, order.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue; // outside the scanned tree: cannot lead back
      if (!order.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, order.get(w)!));
      }
    }
    if (low.get(v) !== order.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v)!.includes(v)) cycles.push(component.sort());
  };
  for (const v of graph.keys()) if (!order.has(v)) visit(v);
  return cycles.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** Every import that breaks a layer rule, as `from -> to`. */
function layerViolations(graph: Graph): string[] {
  const violations: string[] = [];
  for (const [from, targets] of graph) {
    for (const rule of LAYER_RULES) {
      if (!rule.from.some((prefix) => from.startsWith(prefix))) continue;
      for (const to of targets) {
        const forbidden = rule.forbidden.some((prefix) => to.startsWith(prefix));
        if (forbidden) violations.push(`${from} -> ${to}`);
      }
    }
  }
  return violations.sort();
}

// ---------------------------------------------------------------------------------------------

const allowedCycles = KNOWN_EXCEPTIONS.flatMap((e) => ('cycle' in e ? [e.cycle.join(' ')] : []));
const allowedImports = KNOWN_EXCEPTIONS.flatMap((e) =>
  'from' in e ? [`${e.from} -> ${e.to}`] : [],
);

test('the cycle finder finds planted cycles and passes a layered graph', () => {
  const layered = new Map([
    ['a', ['b', 'c']],
    ['b', ['c']],
    ['c', []],
  ]);
  assert.deepEqual(importCycles(layered), []);
  const tangled = new Map([
    ['a', ['b']],
    ['b', ['c', 'd']],
    ['c', ['a']],
    ['d', ['d', 'e']],
    ['e', []],
  ]);
  assert.deepEqual(importCycles(tangled), [['a', 'b', 'c'], ['d']]);
});

test('no file import cycle under src/ (import type and import() count too)', () => {
  const cycles = importCycles(importGraph('src')).map((c) => c.join(' '));
  const unexpected = cycles.filter((c) => !allowedCycles.includes(c));
  assert.deepEqual(unexpected, [], 'import cycles: give the shared piece a home below both files');
  const gone = allowedCycles.filter((c) => !cycles.includes(c));
  assert.deepEqual(gone, [], 'known cycles no longer present: delete them from KNOWN_EXCEPTIONS');
});

test('each layer imports only the layers DESIGN.md allows it', () => {
  const violations = layerViolations(importGraph('src'));
  const unexpected = violations.filter((v) => !allowedImports.includes(v));
  const rules = LAYER_RULES.map((r) => `${r.from.join(' ')} ↛ ${r.forbidden.join(' ')}: ${r.why}`);
  assert.deepEqual(unexpected, [], `layer rules:\n  ${rules.join('\n  ')}`);
  const gone = allowedImports.filter((v) => !violations.includes(v));
  assert.deepEqual(
    gone,
    [],
    'known violations no longer present: delete them from KNOWN_EXCEPTIONS',
  );
});
