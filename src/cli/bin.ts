/** Runs the CLI from source (tests and development: `node --import tsx src/cli/bin.ts …`). */
import { run } from './main.js';

process.exitCode = await run(process.argv);
