/**
 * The README's TypeScript examples for `tandem/client` compile: every ```ts block that imports
 * from 'tandem/client' is written out as a module of its own and type-checked with the
 * project's tsc (strict), 'tandem/client' resolved to the package's entry (src/client/index.ts,
 * from which `npm run build` makes dist/client/index.d.ts, the path package.json exports).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const TSC = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
const TSC_TIMEOUT_MS = 120_000;

/** The README's ```ts / ```typescript blocks that import the client. */
export function clientExamples(markdown: string): string[] {
  const blocks: string[] = [];
  for (const m of markdown.matchAll(/^```(?:ts|typescript)\n([\s\S]*?)^```$/gm)) {
    if (/from ['"]tandem\/client['"]/.test(m[1]!)) blocks.push(m[1]!);
  }
  return blocks;
}

/** tsc's diagnostics for `blocks` as modules against the client ('' when they compile). */
async function typeCheck(blocks: readonly string[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-readme-'));
  try {
    const files = blocks.map((code, i) => {
      const file = join(dir, `example-${i + 1}.mts`);
      writeFileSync(file, code.includes('export ') ? code : `${code}\nexport {};\n`);
      return file;
    });
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2023'],
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [join(REPO, 'node_modules', '@types')],
        paths: { 'tandem/client': [join(REPO, 'src', 'client', 'index.ts')] },
      },
      files,
    };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    try {
      await promisify(execFile)(process.execPath, [TSC, '-p', join(dir, 'tsconfig.json')], {
        timeout: TSC_TIMEOUT_MS,
        maxBuffer: 4 * 1024 * 1024,
      });
      return '';
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      return `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the README's client examples type-check against tandem/client", {
  timeout: 180_000,
}, async () => {
  const blocks = clientExamples(readFileSync(join(REPO, 'README.md'), 'utf8'));
  assert.ok(blocks.length >= 1, 'the README has a ```ts example importing tandem/client');
  assert.equal(await typeCheck(blocks), '');
});

test('the check fails on an example that does not compile (a misspelt method, a wrong option)', {
  timeout: 180_000,
}, async () => {
  const good =
    "import { Client } from 'tandem/client';\nconst c = await Client.connect({ endpoints: ['x'] });\n";
  const bad = [
    `${good}await c.gett('k');\n`,
    `${good}await c.get('k', { consistency: 'eventual' });\n`,
  ];
  const output = await typeCheck(bad);
  assert.match(output, /example-1\.mts.*gett/);
  assert.match(output, /example-2\.mts.*eventual/);
});
