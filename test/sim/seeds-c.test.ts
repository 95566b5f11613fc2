/** Member mode (the production member loop + KV, src/sim/member-host.ts): seeds 0..1999 pass. */
import { test } from 'node:test';
import { assertSeedsPass } from './seeds.js';

test('member mode, seeds 0..1999: no invariant violated', async () => {
  await assertSeedsPass(0, 2000, { member: true });
});
