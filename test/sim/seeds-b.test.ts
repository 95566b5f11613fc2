/** Seeds 1000..1999 pass every invariant (the other half is seeds-a). */
import { test } from 'node:test';
import { assertSeedsPass } from './seeds.js';

test('seeds 1000..1999: no invariant violated', async () => {
  await assertSeedsPass(1000, 1000);
});
