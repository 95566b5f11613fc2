/**
 * `node --import tsx bench/gateway-process.ts <endpoints> <listen> <passthrough|decoded>`: one
 * `tandem gateway` for bench/gateway-overhead.ts, with the pass-through on or off (the CLI has
 * no switch for it: decoding is kept only to be measured against).
 */
import { startGateway } from '../src/proxy/gateway.js';

const [endpoints, listen, mode] = process.argv.slice(2);
if (
  endpoints === undefined ||
  listen === undefined ||
  (mode !== 'passthrough' && mode !== 'decoded')
) {
  process.stderr.write('usage: gateway-process.ts <endpoints> <listen> <passthrough|decoded>\n');
  process.exit(2);
}
const quiet = {
  debug: () => {},
  info: () => {},
  warn: (o: object, m?: string) => console.warn(m, o),
};
const gateway = await startGateway({
  endpoints: endpoints.split(','),
  listen,
  logger: quiet,
  passthrough: mode === 'passthrough',
});
const stop = (): void => {
  void gateway.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
