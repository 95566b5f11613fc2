#!/usr/bin/env node
// Bundles the compiled CLI (dist/cli/main.js, from tsc) into one CommonJS file,
// dist/bundle/main.cjs, which bin/tandem.js runs. Why: a member's start-up was mostly Node's
// module loader working through ~190 of our files and ~100 of zod's, one resolve, read and
// compile each (BENCHMARKS.md, "Start-up").
//
// Why CommonJS and one file: bin/tandem.js compiles it with a V8 code cache (compiled code kept
// on disk from an earlier run), which Node 20 offers only for scripts, not ES modules; with the
// cache a start compiles almost nothing. Lazy imports stay lazy: esbuild wraps each module in an
// initializer that runs on its first import, so `tandem status` runs no member code.
//
// Inlined: our code and the pure-JavaScript packages that read no files of their own and load
// no native addon (INLINED). Every other package stays a require() (or an import(), for those
// loaded on first use) resolved from node_modules at run time (native addons such as lmdb and
// @node-rs/crc32, and packages that find their own files, such as protobufjs and pino's
// transports).
//
// dist/bundle/ sits two levels below the package root, as dist/cli/ does, so the paths the code
// builds from import.meta.url (../../proto/, ../../dist/dashboard/, ../sim/cli.js) still hold:
// import.meta.url becomes the bundle's own file URL.
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
  outfile: join(outdir, 'main.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minifyWhitespace: true,
  sourcemap: true,
  metafile: true,
  logLevel: 'warning',
  // Our sources are ES modules, strict by definition: the directive must open the file (esbuild
  // writes its own after the banner, where it is no directive).
  define: { 'import.meta.url': '__tandemImportMetaUrl' },
  banner: {
    js: "'use strict';\nconst __tandemImportMetaUrl = require('node:url').pathToFileURL(__filename).href;",
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
const outputs = Object.entries(result.metafile.outputs).filter(([file]) => file.endsWith('.cjs'));
const bytes = outputs.reduce((sum, [, output]) => sum + output.bytes, 0);
process.stdout.write(
  `bundle: ${relative(root, outdir)}/ ${outputs.length} file(s), ${(bytes / 1024).toFixed(0)} KiB (inlined: ${INLINED.join(', ')})\n`,
);
