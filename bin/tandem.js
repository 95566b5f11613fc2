#!/usr/bin/env node
// The tandem CLI entry: runs the compiled CLI from dist/ (`npm run build` makes it).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('tandem: dist/ is missing; run `npm run build` first\n');
  process.exit(2);
}
const { run } = await import(main);
process.exitCode = await run(process.argv);
