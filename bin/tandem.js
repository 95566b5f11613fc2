#!/usr/bin/env node
// The tandem CLI entry: runs the bundled CLI from dist/bundle/ (`npm run build` makes it from
// tsc's dist/cli/; tools/bundle-cli.mjs says why it is bundled).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/bundle/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('tandem: dist/bundle/ is missing; run `npm run build` first\n');
  process.exit(2);
}
const { run } = await import(main);
process.exitCode = await run(process.argv);
