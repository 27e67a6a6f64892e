import { Browser, Page } from '@playwright/test';
import { ADMIN } from '../global-setup';
import { api, createProject, createStage, expect, open, test, unique, uploadBuild } from './helpers';

/** A browser with nobody signed in. */
async function signedOut(browser: Browser, baseURL: string) {
  const context = await browser.newContext({ baseURL, storageState: { cookies: [], origins: [] } });
  return { context, page: await context.newPage() };
}

async function signIn(page: Page, username: string, password: string) {
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('a signed-out teammate opening a stage link signs in and lands on that stage', async ({ browser, page, baseURL, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Market EU', { type: 'prod' });
  const { context, page: teammate } = await signedOut(browser, baseURL!);
  const link = `/projects/${project}/stages/market-eu`;
  const first = await teammate.goto(link);
  await expect(teammate).toHaveURL(`/login?next=${encodeURIComponent(link).replace(/%2F/g, '/')}`);
  expect(first?.status()).toBe(200);
  await signIn(teammate, ADMIN.username, 'not-the-password');
  await expect(teammate.getByRole('alert')).toHaveText('Wrong username or password.');
  await signIn(teammate, ADMIN.username, ADMIN.password);
  await expect(teammate).toHaveURL(link);
  await expect(teammate.getByRole('heading', { level: 1 })).toHaveText('Market EU');
  // Signing out ends the session: the link asks for sign-in again.
  await teammate.getByRole('button', { name: 'Sign out' }).click();
  await expect(teammate).toHaveURL('/login');
  await teammate.goto(link);
  await expect(teammate).toHaveURL(/\/login\?next=/);
  await context.close();
});

test('a viewer sees the project but no button to change it, and the server refuses the change anyway', async ({ browser, page, baseURL, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Web', { type: 'dev' });
  const viewer = unique('viewer').replace(' ', '-').toLowerCase();
  expect((await api(page).post('/api/v1/users', { data: { username: viewer, password: 'viewer-password' } })).status()).toBe(201);
  const member = await api(page).post(`/api/v1/projects/${project}/members`, { data: { username: viewer, role: 'viewer' } });
  expect(member.status()).toBe(200);
  const { context, page: theirs } = await signedOut(browser, baseURL!);
  await theirs.goto(`/projects/${project}`);
  await signIn(theirs, viewer, 'viewer-password');
  await expect(theirs).toHaveURL(`/projects/${project}`);
  await expect(theirs.getByRole('article', { name: 'Web' })).toBeVisible();
  await expect(theirs.getByRole('button', { name: '+ NEW STAGE' })).toHaveCount(0);
  await expect(theirs.getByRole('link', { name: /Settings/ })).toHaveCount(0);
  await open(theirs, `/projects/${project}/stages/web`);
  await expect(theirs.getByRole('heading', { level: 1 })).toHaveText('Web');
  await expect(theirs.getByRole('button', { name: 'Deploy' })).toHaveCount(0);
  await expect(theirs.getByRole('link', { name: 'Settings' })).toHaveCount(0);
  const refused = await theirs.request.post(`/api/v1/projects/${project}/stages/web/suspend`, { headers: { Origin: baseURL! } });
  expect(refused.status()).toBe(403);
  expect((await refused.json()).detail).toContain('needs the developer role');
  // A project they are not a member of does not exist for them.
  const other = await theirs.request.get('/api/v1/projects/no-such-project');
  expect(other.status()).toBe(404);
  await context.close();
});

test('a change with the session cookie from another origin is refused, for REST and server functions', async ({ page, baseURL, consoleErrors }) => {
  // The URL of the create-project server function, as the page calls it.
  const calls: string[] = [];
  page.on('request', (r) => r.method() === 'POST' && r.url().includes('/api/') && !r.url().includes('/api/v1/') && calls.push(r.url()));
  const project = await createProject(page);
  expect(calls.length).toBeGreaterThan(0);
  const before = await (await page.request.get('/api/v1/projects')).json();
  const forged = await api(page).post(calls[0], {
    headers: { Origin: 'http://evil.example', 'Content-Type': 'application/x-www-form-urlencoded' },
    data: 'name=Forged&project_id=forged',
  });
  expect(forged.status()).toBe(403);
  expect(await (await page.request.get('/api/v1/projects')).json()).toEqual(before);
  await createStage(page, 'Web', { type: 'dev' });
  const suspend = `/api/v1/projects/${project}/stages/web/suspend`;
  expect((await api(page).post(suspend, { headers: { Origin: 'http://evil.example' } })).status()).toBe(403);
  const stage = await page.request.get(`/api/v1/projects/${project}/stages/web`);
  expect((await stage.json()).status).toBe('running');
  // The Activity of the project names who did what.
  const events = await (await page.request.get(`/api/v1/projects/${project}/events`)).json();
  expect(events[0]).toMatchObject({ actor: 'admin', kind: 'stage.created', target: 'web' });
  expect(baseURL).toBeTruthy();
});

/** A new user with `role` in `project`, created through the dashboard's own API with the administrator's session. */
async function member(page: Page, project: string, role: string): Promise<string> {
  const name = unique(role).replace(' ', '-').toLowerCase();
  expect((await api(page).post('/api/v1/users', { data: { username: name, password: `${role}-password` } })).status()).toBe(201);
  expect((await api(page).post(`/api/v1/projects/${project}/members`, { data: { username: name, role } })).status()).toBe(200);
  return name;
}

test('an administrator adds a member on the Members page; the Activity page names who did what', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  const name = unique('dev').replace(' ', '-').toLowerCase();
  expect((await api(page).post('/api/v1/users', { data: { username: name, password: 'developer-password' } })).status()).toBe(201);
  await open(page, `/projects/${project}`);
  await page.getByRole('link', { name: 'Members' }).click();
  await expect(page).toHaveURL(`/projects/${project}/members`);
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Role').selectOption('developer');
  await page.getByRole('button', { name: 'Add member' }).click();
  await expect(page.getByRole('status')).toHaveText(`${name} is now Developer.`);
  await expect(page.getByRole('row', { name })).toContainText('Developer');
  await page.getByLabel('Username').fill('nobody-at-all');
  await page.getByRole('button', { name: 'Add member' }).click();
  await expect(page.getByRole('alert')).toContainText("There is no user 'nobody-at-all'.");
  await open(page, `/projects/${project}`);
  await createStage(page, 'Web', { type: 'dev' });
  await open(page, `/projects/${project}/activity`);
  const table = page.getByRole('table', { name: 'Activity' });
  await expect(table.getByRole('row').nth(1)).toContainText('stage.created');
  await expect(table).toContainText(`'${name}' added as developer.`);
  await expect(table.getByRole('row').filter({ hasText: 'member.added' })).toContainText('admin');
  await page.getByLabel('Kind').fill('stage.created');
  await page.getByLabel('Kind').press('Tab');
  await expect(table.getByRole('row')).toHaveCount(2);
});

test('a developer deploys to DEV but cannot change or delete a PROD stage', async ({ browser, page, baseURL, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Dev', { type: 'dev' });
  await createStage(page, 'Prod', { type: 'prod' });
  const apiBase = `/api/v1/projects/${project}`;
  const manifest = '[[component]]\nname = "once"\nkind = "job"\ncommand = "/bin/true"\n';
  expect(await uploadBuild(page, project, { 'pergola.toml': manifest })).toBe(1);
  const name = await member(page, project, 'developer');
  const { context, page: theirs } = await signedOut(browser, baseURL!);
  await theirs.goto(`/projects/${project}/stages/dev`);
  await signIn(theirs, name, 'developer-password');
  await expect(theirs).toHaveURL(`/projects/${project}/stages/dev`);
  await expect(theirs.locator('body[data-hydrated="true"]')).toHaveCount(1);
  await theirs.getByLabel('Build').selectOption('1');
  await theirs.getByRole('button', { name: 'Deploy' }).click();
  await expect(theirs.getByRole('list', { name: 'Events timeline' })).toContainText('Release 1 deployed', { timeout: 15_000 });
  await open(theirs, `/projects/${project}/stages/prod`);
  await expect(theirs.getByRole('heading', { level: 1 })).toHaveText('Prod');
  await expect(theirs.getByRole('button', { name: 'Deploy' })).toHaveCount(0);
  await expect(theirs.getByRole('link', { name: 'Settings' })).toHaveCount(0);
  const refused = await theirs.request.delete(`${apiBase}/stages/prod`, { headers: { Origin: baseURL! } });
  expect(refused.status()).toBe(403);
  expect((await refused.json()).detail).toContain('needs the maintainer role');
  expect((await (await page.request.get(`${apiBase}/stages/prod`)).json()).status).toBe('running');
  await context.close();
});

test('an invitation link lets the invited person create their account, once, and join the project', async ({ browser, page, baseURL, consoleErrors }) => {
  const project = await createProject(page);
  await open(page, '/admin');
  await page.getByLabel('Project (optional)').fill(project);
  await page.getByLabel('Role in it').selectOption('viewer');
  await page.getByRole('button', { name: 'Create invitation link' }).click();
  const link = (await page.getByLabel('Invitation link').textContent())!;
  expect(link).toMatch(/\/invite\/pgi_/);
  const name = unique('guest').replace(' ', '-').toLowerCase();
  const { context, page: invited } = await signedOut(browser, baseURL!);
  await invited.goto(link);
  await expect(invited.getByRole('heading', { name: 'Create your account' })).toBeVisible();
  await invited.getByLabel('Username').fill(name);
  await invited.getByLabel('Password').fill('invited-password');
  await invited.getByRole('button', { name: 'Create my account' }).click();
  await expect(invited).toHaveURL('/');
  await expect(invited.getByLabel('Signed in as')).toHaveText(name);
  await expect(invited.locator(`a[href="/projects/${project}"]`)).toBeVisible();
  await context.close();
  // The link worked once.
  const { context: again, page: second } = await signedOut(browser, baseURL!);
  await second.goto(link);
  await second.getByLabel('Username').fill(`${name}-2`);
  await second.getByLabel('Password').fill('invited-password');
  await second.getByRole('button', { name: 'Create my account' }).click();
  await expect(second.getByRole('alert')).toContainText('already used or has expired');
  await again.close();
});

// (No consoleErrors fixture: the browser logs the page's code it was kept from loading.)
test('the sign-in and invitation forms work before the page has loaded its code', async ({ browser, page, baseURL }) => {
  const project = await createProject(page);
  await open(page, '/admin');
  await page.getByLabel('Project (optional)').fill(project);
  await page.getByRole('button', { name: 'Create invitation link' }).click();
  const invitation = (await page.getByLabel('Invitation link').textContent())!;
  // A slow connection: the wasm never arrives, so the forms are the server's HTML alone.
  const { context, page: slow } = await signedOut(browser, baseURL!);
  await slow.route('**/*.wasm', (route) => route.abort());
  await slow.goto(invitation);
  const name = unique('early').replace(' ', '-').toLowerCase();
  await slow.getByLabel('Username').fill(name);
  await slow.getByLabel('Password').fill('invited-password');
  await slow.getByRole('button', { name: 'Create my account' }).click();
  await expect(slow).toHaveURL('/');
  await expect(slow.getByLabel('Signed in as')).toHaveText(name);
  await context.close();
  // Signing in from a shared link before the code loads lands on the linked page.
  const { context: other, page: early } = await signedOut(browser, baseURL!);
  await early.route('**/*.wasm', (route) => route.abort());
  const link = `/projects/${project}`;
  await early.goto(link);
  await expect(early).toHaveURL(/\/login\?next=/);
  await early.getByLabel('Username').fill(ADMIN.username);
  await early.getByLabel('Password').fill(ADMIN.password);
  await early.getByRole('button', { name: 'Sign in' }).click();
  await expect(early).toHaveURL(link);
  await other.close();
});
