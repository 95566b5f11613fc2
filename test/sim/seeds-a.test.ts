/** Seeds 0..999 pass every invariant (the other half is seeds-b, so the runner uses both cores). */
import { test } from 'node:test';
import { assertSeedsPass } from './seeds.js';

test('seeds 0..999: no invariant violated', async () => {
  await assertSeedsPass(0, 1000);
});
