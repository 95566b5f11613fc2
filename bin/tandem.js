#!/usr/bin/env node
// The tandem CLI entry: runs the bundled CLI, dist/bundle/main.cjs (`npm run build` makes it from
// tsc's dist/cli/; tools/bundle-cli.mjs says why it is bundled), compiled with a V8 code cache.
//
// The code cache is the compiled code of the bundle as an earlier run of the same command left
// it: main.cjs.<crc32>-<bytes>.<command>.v8cache, beside the bundle or in TANDEM_CODE_CACHE_DIR.
// With it a start compiles almost nothing (BENCHMARKS.md, "Start-up: a code cache").
// - It is written once per command and bundle: 3 s after the start, or when the command ends if
//   that is sooner, so it holds what a start and its first seconds of serving compiled.
// - V8 refuses a cache made by another Node version or with other flags (it is then written
//   again), but of the source it checks only the length: the file name carries the bundle's
//   CRC32, so a cache is only ever offered to the bundle it was made from.
// - A cache that cannot be written (a read-only install) is no error: the bundle compiles as it
//   would without one. TANDEM_CODE_CACHE=off runs without it.
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import zlib from 'node:zlib';

/** After this long a long-running command (a member) writes its cache: it is serving by then. */
const WRITE_AFTER_MS = 3000;
/** How the code cache went, for the member's serving log line (src/cli/startup-timeline.ts). */
const STATE_KEY = Symbol.for('tandem.codeCache');

const main = fileURLToPath(new URL('../dist/bundle/main.cjs', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('tandem: dist/bundle/ is missing; run `npm run build` first\n');
  process.exit(2);
}
const run = load(main);
process.exitCode = await run(process.argv);

/** The bundle's `run`, compiled with the code cache when this Node and the user allow it. */
function load(file) {
  const require = createRequire(file);
  const supported =
    typeof zlib.crc32 === 'function' && vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER !== undefined;
  if (!supported || process.env.TANDEM_CODE_CACHE === 'off') {
    globalThis[STATE_KEY] = 'off';
    return require(file).run;
  }
  const source = readFileSync(file);
  const argument = process.argv[2] ?? '';
  const command = /^[a-z][a-z0-9-]{0,31}$/.test(argument) ? argument : 'cli';
  const cacheDir = process.env.TANDEM_CODE_CACHE_DIR || dirname(file);
  // main.cjs.<crc32>-<bytes>.<command>.v8cache
  const cachePrefix = `${basename(file)}.`;
  const cacheSuffix = `.${command}.v8cache`;
  const cacheName = `${cachePrefix}${zlib.crc32(source).toString(16)}-${source.length}${cacheSuffix}`;
  const cacheFile = join(cacheDir, cacheName);
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined; // none yet
  }
  // The same wrapper Node's CommonJS loader puts around a module.
  const script = new vm.Script(
    `(function (exports, require, module, __filename, __dirname) {${source.toString('utf8')}\n})`,
    {
      filename: file,
      cachedData,
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    },
  );
  const state =
    cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'used';
  globalThis[STATE_KEY] = state;
  const module = { exports: {} };
  script
    .runInThisContext()
    .call(module.exports, module.exports, require, module, file, dirname(file));
  if (state === 'used') return module.exports.run;
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    const temporary = `${cacheFile}.${process.pid}.tmp`;
    try {
      writeFileSync(temporary, script.createCachedData());
      renameSync(temporary, cacheFile); // whole or not at all, whoever else writes it meanwhile
      // This command's caches for other bundles (earlier builds) are of no more use.
      for (const name of readdirSync(cacheDir)) {
        if (name.startsWith(cachePrefix) && name.endsWith(cacheSuffix) && name !== cacheName) {
          rmSync(join(cacheDir, name), { force: true });
        }
      }
    } catch {
      // Best effort: the next run compiles without.
      try {
        rmSync(temporary, { force: true });
      } catch {}
    }
  };
  setTimeout(write, WRITE_AFTER_MS).unref();
  process.once('exit', write); // a command that ends sooner (process.exit included)
  return module.exports.run;
}
