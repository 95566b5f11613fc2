#!/usr/bin/env node
// Bundles the compiled CLI (dist/cli/main.js, from tsc) into dist/bundle/, which bin/tandem.js
// runs. Why: a member's start-up was mostly Node's module loader working through ~190 of our
// files and ~100 of zod's, one resolve, read and compile each (BENCHMARKS.md, "Start-up"). Code
// splitting keeps the CLI's lazy imports lazy: `tandem status` never loads the member.
//
// Inlined: our code and the pure-JavaScript packages that read no files of their own and load
// no native addon (INLINED). Every other package stays an import resolved from node_modules at
// run time (native addons such as lmdb and @node-rs/crc32, and packages that find their own
// files, such as protobufjs and pino's transports).
//
// dist/bundle/ sits two levels below the package root, as dist/cli/ does, so the paths the code
// builds from import.meta.url (../../proto/, ../../dist/dashboard/, ../sim/cli.js) still hold.
import { rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'bundle');
/** Packages copied into the bundle; test/cli/bundle.test.ts checks none is imported at run time. */
export const INLINED = ['zod', 'yaml', 'commander'];

/** The package a bare import names: `@scope/name` or `name`. */
function packageOf(specifier) {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

rmSync(outdir, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: [join(root, 'dist', 'cli', 'main.js')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  metafile: true,
  logLevel: 'warning',
  // Inlined CommonJS (commander) calls require() for Node's built-ins; ESM has no require.
  banner: {
    js: "import { createRequire as __tandemCreateRequire } from 'node:module'; const require = __tandemCreateRequire(import.meta.url);",
  },
  plugins: [
    {
      name: 'tandem-externals',
      setup(b) {
        b.onResolve({ filter: /^[^./]/ }, (args) => {
          if (args.path.startsWith('node:')) return { external: true };
          return INLINED.includes(packageOf(args.path)) ? undefined : { external: true };
        });
      },
    },
  ],
});
const outputs = Object.entries(result.metafile.outputs).filter(([file]) => file.endsWith('.js'));
const bytes = outputs.reduce((sum, [, output]) => sum + output.bytes, 0);
process.stdout.write(
  `bundle: ${relative(root, outdir)}/ ${outputs.length} files, ${(bytes / 1024).toFixed(0)} KiB (inlined: ${INLINED.join(', ')})\n`,
);
