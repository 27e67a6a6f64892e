import { createProject, expect, open, test } from './helpers';

// Run against a server started as `scripts/start.sh` starts it (see serve.sh "defaults"): the
// README's defaults, a relative data dir, the workspace root as working directory. A new user
// tries the demo there first.
test('on the README defaults, the demo app runs: storage, worker, migration and share link work', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await page.getByRole('button', { name: 'Try the demo app' }).click();
  await expect(page).toHaveURL(`/projects/${project}/stages/demo`, { timeout: 30_000 });
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });
  // The migration writes to storage; it completed, and nothing crashed (the worker writes
  // there too, and crash-looped when storage paths were relative to the server).
  await expect(page.getByRole('row', { name: 'migrate' }).getByRole('cell').nth(1)).toHaveText('completed');
  await expect(page.getByRole('row', { name: 'worker' }).getByRole('cell').nth(1)).toHaveText('running');
  const timeline = page.getByRole('list', { name: 'Events timeline' });
  await expect(timeline).toContainText('migrate completed');
  await expect(timeline.locator('li[data-kind="crashed"]')).toHaveCount(0);
  const href = await page.getByRole('list', { name: 'Share links' }).getByRole('link').getAttribute('href');
  const first = await page.goto(href!);
  expect(first?.status()).toBe(200);
  await expect(page.getByRole('heading', { name: 'Pergola demo' })).toBeVisible();
  await page.reload();
  await expect(page.locator('#visits')).toHaveText('2');
  await open(page, `/projects/${project}/stages/demo`);
  await expect(page.getByRole('row', { name: 'worker' }).getByRole('cell').nth(1)).toHaveText('running');
  await expect(page.getByRole('list', { name: 'Events timeline' }).locator('li[data-kind="crashed"]')).toHaveCount(0);
  await page.request.post(`/api/v1/projects/${project}/stages/demo/suspend`);
});
