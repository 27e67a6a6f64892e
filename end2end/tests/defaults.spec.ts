import { readFileSync } from 'node:fs';
import { api, createProject, expect, open, test } from './helpers';

// Run against a server started as `scripts/start.sh` starts it (see serve.sh "defaults"): the
// README's defaults, a relative data dir, the workspace root as working directory. A new user
// tries the demo there first.
test('a fresh instance asks for the setup code from its log, then the demo app runs: storage, worker, migration and share link work', async ({ page, consoleErrors }) => {
  // Nothing is reachable before the administrator exists.
  await page.goto('/');
  await expect(page).toHaveURL('/setup');
  const code = /setup code:\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})/.exec(readFileSync('/tmp/pergola-e2e-defaults.log', 'utf8'))![1];
  await page.getByLabel('Setup code').fill('AAAA-BBBB-CCCC-DDDD');
  await page.getByLabel('Username').fill('root');
  await page.getByLabel('Password').fill('defaults-password');
  await page.getByRole('button', { name: 'Create the administrator account' }).click();
  await expect(page.getByRole('alert')).toContainText('not the setup code');
  await page.getByLabel('Setup code').fill(code);
  await page.getByLabel('Username').fill('root');
  await page.getByLabel('Password').fill('defaults-password');
  await page.getByRole('button', { name: 'Create the administrator account' }).click();
  await expect(page).toHaveURL('/');
  await expect(page.getByLabel('Signed in as')).toHaveText('root');
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
  await api(page).post(`/api/v1/projects/${project}/stages/demo/suspend`);
});
