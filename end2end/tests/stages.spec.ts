import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import { api, createProject, createStage, expect, open, packBuild, test, unique, uploadBuild } from './helpers';

test('a new project gets an ID derived from its name and is listed', async ({ page, consoleErrors }) => {
  const name = unique('Übersicht Café');
  const id = await createProject(page, name);
  expect(id).toMatch(/^ubersicht-cafe-[a-z0-9]+$/);
  await open(page, '/');
  await expect(page.getByRole('link', { name })).toBeVisible();
  // The same ID again is refused with a suggestion.
  await page.getByLabel('Project name').fill('whatever');
  await page.getByLabel('Project ID').fill(id);
  await page.getByRole('button', { name: 'Create project' }).click();
  await expect(page.getByText(`Project ID '${id}' is already taken. Try '${id}-2'.`)).toBeVisible();
});

test('the popup derives the Stage ID live from the name and creates the stage', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await page.getByRole('button', { name: '+ NEW STAGE' }).click();
  const dialog = page.getByRole('dialog', { name: 'New stage' });
  await expect(dialog).toBeVisible();
  const name = dialog.getByLabel('Name');
  const id = dialog.getByLabel('Stage ID');
  await name.pressSequentially('My New Stage');
  await expect(id).toHaveValue('my-new-stage');
  await expect(dialog.getByText("'my-new-stage' is available.")).toBeVisible();
  await name.fill('Übersicht Café');
  await expect(id).toHaveValue('ubersicht-cafe');
  await dialog.getByLabel('Type').selectOption('qa');
  await dialog.getByRole('button', { name: 'Create stage' }).click();
  await expect(dialog).toBeHidden();
  const card = page.getByRole('article', { name: 'Übersicht Café', exact: true });
  await expect(card).toContainText('ubersicht-cafe');
  await expect(card).toContainText('QA');
  await expect(card).toContainText('running');
  await expect(page.getByRole('status')).toHaveText("Stage 'Übersicht Café' was created.");
  await card.getByRole('link', { name: 'Übersicht Café', exact: true }).click();
  await expect(page).toHaveURL(`/projects/${project}/stages/ubersicht-cafe`);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Übersicht Café');
});

test('an overridden Stage ID stops following the name', async ({ page, consoleErrors }) => {
  await createProject(page);
  await page.getByRole('button', { name: '+ NEW STAGE' }).click();
  const dialog = page.getByRole('dialog', { name: 'New stage' });
  await dialog.getByLabel('Name').fill('Integration Tests');
  await expect(dialog.getByLabel('Stage ID')).toHaveValue('integration-tests');
  await dialog.getByLabel('Stage ID').fill('test');
  await dialog.getByLabel('Name').fill('Integration Tests (nightly)');
  await expect(dialog.getByLabel('Stage ID')).toHaveValue('test');
  await dialog.getByRole('button', { name: 'Create stage' }).click();
  const card = page.getByRole('article', { name: 'Integration Tests (nightly)' });
  await expect(card).toContainText('test');
  await expect(card.locator('code')).toHaveText('test');
});

test('a taken Stage ID is complained about, with a free suggestion, and nothing is created', async ({ page, consoleErrors }) => {
  await createProject(page);
  await createStage(page, 'dev');
  await page.getByRole('button', { name: '+ NEW STAGE' }).click();
  const dialog = page.getByRole('dialog', { name: 'New stage' });
  await dialog.getByLabel('Name').fill('DEV');
  await expect(dialog.getByLabel('Stage ID')).toHaveValue('dev');
  // Live check while typing.
  await expect(dialog.getByText("Stage ID 'dev' is already taken. Try 'dev-2'.")).toBeVisible();
  await expect(dialog.getByLabel('Stage ID')).toHaveAttribute('aria-invalid', 'true');
  // The server refuses it on submit too (409 Conflict); the dialog stays open.
  const refused = page.waitForResponse((r) => r.url().includes('/api/create_stage'));
  await dialog.getByRole('button', { name: 'Create stage' }).click();
  expect((await refused).status()).toBe(409);
  await expect(dialog.getByText("Stage ID 'dev' is already taken. Try 'dev-2'.")).toBeVisible();
  await expect(dialog).toBeVisible();
  await expect(page.getByRole('article')).toHaveCount(1);
  await dialog.getByRole('button', { name: "Use 'dev-2'" }).click();
  await expect(dialog.getByLabel('Stage ID')).toHaveValue('dev-2');
  await expect(dialog.getByText("'dev-2' is available.")).toBeVisible();
  await dialog.getByRole('button', { name: 'Create stage' }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByRole('article', { name: 'DEV', exact: true })).toContainText('dev-2');
  await expect(page.getByRole('article')).toHaveCount(2);
});

test('invalid Stage IDs and names are explained and create nothing', async ({ page, consoleErrors }) => {
  await createProject(page);
  await page.getByRole('button', { name: '+ NEW STAGE' }).click();
  const dialog = page.getByRole('dialog', { name: 'New stage' });
  // The popup opens with the Name field focused (a frame after it shows): typing the Stage
  // ID first waits for that, or the focus would move away mid-typing.
  await expect(dialog.getByLabel('Name')).toBeFocused();
  const id = dialog.getByLabel('Stage ID');
  await id.fill('Bad ID');
  await expect(dialog.getByText(/may only contain lowercase letters/)).toBeVisible();
  await expect(id).toHaveAttribute('aria-invalid', 'true');
  await id.fill('9lives');
  await expect(dialog.getByText('Stage ID must start with a letter.')).toBeVisible();
  await id.fill('new');
  await expect(dialog.getByText("'new' is reserved; please choose another Stage ID.")).toBeVisible();
  await id.fill('fine');
  await dialog.getByLabel('Name').fill('   ');
  await dialog.getByRole('button', { name: 'Create stage' }).click();
  await expect(dialog.getByText('Stage name is required.')).toBeVisible();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByRole('article')).toHaveCount(0);
});

test('a stage can be suspended and resumed from its settings', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  const card = await createStage(page, 'QA', { type: 'qa' });
  await card.getByRole('link', { name: 'Settings of QA' }).click();
  await expect(page).toHaveURL(`/projects/${project}/stages/qa/settings`);
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  await page.getByRole('button', { name: 'Suspend stage' }).click();
  await expect(page.getByRole('button', { name: 'Resume stage' })).toBeVisible();
  await expect(page.getByRole('region', { name: 'Suspend or resume' })).toContainText('suspended');
  await open(page, `/projects/${project}`);
  await expect(page.getByRole('article', { name: 'QA', exact: true })).toContainText('suspended');
  await open(page, `/projects/${project}/stages/qa/settings`);
  await page.getByRole('button', { name: 'Resume stage' }).click();
  await expect(page.getByRole('button', { name: 'Suspend stage' })).toBeVisible();
  await open(page, `/projects/${project}`);
  await expect(page.getByRole('article', { name: 'QA', exact: true })).toContainText('running');
});

test('settings rename and retype a stage; its ID never changes', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Staging');
  await open(page, `/projects/${project}/stages/staging/settings`);
  await page.getByRole('region', { name: 'General' }).getByLabel('Name').fill('');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await expect(page.getByText('Stage name is required.')).toBeVisible();
  await page.getByRole('region', { name: 'General' }).getByLabel('Name').fill('Pre-production');
  await page.getByLabel('Type').selectOption('prod');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Saved.' })).toBeVisible();
  await open(page, `/projects/${project}`);
  const card = page.getByRole('article', { name: 'Pre-production' });
  await expect(card).toContainText('PROD');
  await expect(card.locator('code')).toHaveText('staging');
});

test('DELETE STAGE archives the stage; it is restorable from the archived list until its due date', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Integration Tests', { id: 'test' });
  // Suspend first: a restore must bring back the status from before the deletion.
  await open(page, `/projects/${project}/stages/test/settings`);
  await page.getByRole('button', { name: 'Suspend stage' }).click();
  await expect(page.getByRole('button', { name: 'Resume stage' })).toBeVisible();
  await page.getByRole('button', { name: 'DELETE STAGE' }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete stage Integration Tests?' });
  await expect(dialog).toContainText('DEV stages are kept for 1 day');
  const confirm = dialog.getByLabel('Type the Stage ID test to confirm');
  const submit = dialog.getByRole('button', { name: 'Delete stage' });
  await expect(submit).toBeDisabled();
  await confirm.fill('tset');
  await expect(submit).toBeDisabled();
  await confirm.fill('test');
  await expect(submit).toBeEnabled();
  await submit.click();
  await expect(page).toHaveURL(`/projects/${project}`);
  await expect(page.getByRole('article')).toHaveCount(0);
  const archived = page.getByRole('region', { name: 'Archived stages' });
  const row = archived.getByRole('row', { name: 'Integration Tests' });
  await expect(row).toContainText('test');
  await expect(row).toContainText('DEV');
  const cells = await row.getByRole('cell').allTextContents();
  const archivedAt = Date.parse(cells[3].replace(' UTC', 'Z').replace(' ', 'T'));
  const dueAt = Date.parse(cells[4].replace(' UTC', 'Z').replace(' ', 'T'));
  expect(dueAt - archivedAt).toBe(24 * 3600 * 1000);
  // The shared link of an archived stage says so.
  const gone = await page.request.get(`/projects/${project}/stages/test`);
  expect(gone.status()).toBe(404);
  expect(await gone.text()).toContain('was deleted and is archived until');
  await page.getByRole('button', { name: 'Restore test' }).click();
  const card = page.getByRole('article', { name: 'Integration Tests' });
  await expect(card).toBeVisible();
  await expect(card).toContainText('suspended');
  await expect(page.getByRole('status')).toHaveText("Stage 'Integration Tests' was restored.");
  await expect(archived.getByText('No archived stages.')).toBeVisible();
});

test('a shared stage link works as a cold page load; unknown ones answer 404', async ({ browser, page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Market EU', { type: 'prod' });
  // A teammate who is signed in (a signed-out one is sent through sign-in: access.spec.ts).
  const context = await browser.newContext({ storageState: test.info().project.use.storageState });
  const teammate = await context.newPage();
  const errors: string[] = [];
  teammate.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  const response = await teammate.goto(`/projects/${project}/stages/market-eu`);
  expect(response?.status()).toBe(200);
  // Rendered by the server: the content is in the HTML before any script runs.
  const html = await response!.text();
  expect(html).toContain('Market EU');
  await expect(teammate.locator('body[data-hydrated="true"]')).toHaveCount(1);
  await expect(teammate.getByRole('heading', { level: 1 })).toHaveText('Market EU');
  await expect(teammate.getByText('PROD').first()).toBeVisible();
  expect(errors).toEqual([]);
  for (const url of [`/projects/${project}/stages/nope`, '/projects/no-such-project', '/nowhere']) {
    const r = await teammate.request.get(url);
    expect(r.status(), url).toBe(404);
    expect(await r.text()).toContain('Not found');
  }
  await context.close();
});

test('names with markup render as text', async ({ page, consoleErrors }) => {
  await createProject(page);
  const name = '<script>alert(1)</script> & "quotes"';
  const card = await createStage(page, name);
  await expect(card.getByRole('link', { name, exact: true })).toBeVisible();
  await expect(card.locator('code')).toHaveText('script-alert-1-script-quotes');
  await page.reload();
  await expect(page.getByRole('article', { name, exact: true })).toBeVisible();
});

test('an administrator adjusts retention; it applies to stages deleted afterwards', async ({ page, consoleErrors }) => {
  await open(page, '/admin');
  const dev = page.getByLabel('DEV retention (days)');
  await expect(dev).toHaveValue('1');
  await dev.fill('0');
  await page.getByRole('button', { name: 'Save retention' }).click();
  await expect(page.getByText('Retention for DEV must be a whole number of days from 1 to 3650.')).toBeVisible();
  try {
    await dev.fill('3');
    await page.getByRole('button', { name: 'Save retention' }).click();
    await expect(page.getByText('Saved. Applies to stages deleted from now on.')).toBeVisible();
    const project = await createProject(page);
    await createStage(page, 'Short lived');
    await open(page, `/projects/${project}/stages/short-lived/settings`);
    await page.getByRole('button', { name: 'DELETE STAGE' }).click();
    await expect(page.getByRole('dialog')).toContainText('DEV stages are kept for 3 days');
    await page.getByLabel('Type the Stage ID short-lived to confirm').fill('short-lived');
    await page.getByRole('dialog').getByRole('button', { name: 'Delete stage' }).click();
    await expect(page).toHaveURL(`/projects/${project}`);
    const row = page.getByRole('row', { name: 'Short lived' });
    await expect(row.getByRole('cell').nth(4)).toHaveText(/UTC$/);
    const cells = await row.getByRole('cell').allTextContents();
    const toMs = (s: string) => Date.parse(s.replace(' UTC', 'Z').replace(' ', 'T'));
    expect(toMs(cells[4]) - toMs(cells[3])).toBe(3 * 24 * 3600 * 1000);
  } finally {
    await open(page, '/admin');
    await page.getByLabel('DEV retention (days)').fill('1');
    await page.getByRole('button', { name: 'Save retention' }).click();
    await expect(page.getByText('Saved. Applies to stages deleted from now on.')).toBeVisible();
  }
});

test("an administrator adjusts a stage type's resource limits; the next start of its components gets them", async ({ page, consoleErrors }) => {
  await open(page, '/admin');
  const section = page.getByRole('region', { name: 'Resource limits' });
  // How this machine enforces them, and no banner: components run sandboxed here.
  await expect(section).toContainText(/Enforced here with (cgroup v2|cgroup v1|rlimits): memory by/);
  await expect(page.getByRole('complementary', { name: 'Sandbox off' })).toHaveCount(0);
  const dev = section.getByRole('group', { name: 'DEV' });
  const files = dev.getByLabel('Open files');
  const nice = dev.getByLabel('CPU nice (0–19)');
  await expect(files).toHaveValue('1024');
  await expect(nice).toHaveValue('10');
  await expect(section.getByRole('group', { name: 'PROD' }).getByLabel('Out-of-memory preference (0–1000)')).toHaveValue('0');
  await nice.fill('20');
  await section.getByRole('button', { name: 'Save limits' }).click();
  await expect(section.getByText('CPU nice (0–19) for DEV must be a whole number from 0 to 19.')).toBeVisible();
  await expect(nice).toHaveAttribute('aria-invalid', 'true');
  const restore = async () => {
    await open(page, '/admin');
    const dev = page.getByRole('region', { name: 'Resource limits' }).getByRole('group', { name: 'DEV' });
    await dev.getByLabel('Open files').fill('1024');
    await dev.getByLabel('CPU nice (0–19)').fill('10');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await expect(page.getByText('Saved. Applies to components started from now on.')).toBeVisible();
  };
  try {
    await nice.fill('13');
    await files.fill('200');
    await section.getByRole('button', { name: 'Save limits' }).click();
    await expect(section.getByText('Saved. Applies to components started from now on.')).toBeVisible();
    await page.reload();
    await expect(page.getByRole('region', { name: 'Resource limits' }).getByRole('group', { name: 'DEV' }).getByLabel('Open files')).toHaveValue('200');
    // A DEV stage's job reports what it was started with.
    const project = await createProject(page);
    await createStage(page, 'Dev');
    const base = `/api/v1/projects/${project}`;
    const manifest = '[[component]]\nname = "probe"\nkind = "job"\ncommand = "sh"\n' +
      'args = ["-c", "echo files=$(ulimit -n) nice=$(cut -d\' \' -f19 /proc/self/stat)"]\n';
    const build = await uploadBuild(page, project, { 'pergola.toml': manifest });
    expect((await api(page).post(`${base}/stages/dev/releases`, { data: { build } })).status()).toBe(201);
    await expect.poll(async () => {
      const lines = await (await api(page).get(`${base}/stages/dev/components/probe/logs`)).json();
      return lines.map((l: { line: string }) => l.line);
    }).toContain('files=200 nice=13');
  } finally {
    await restore();
  }
});

test('stage settings hold the configuration; secrets are masked and never sent back', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'QA', { type: 'qa' });
  await open(page, `/projects/${project}/stages/qa/settings`);
  const section = page.getByRole('region', { name: 'Configuration' });
  await expect(section).toContainText("Changes apply with the stage's next release");
  await expect(section).toContainText('No settings yet.');
  await section.getByLabel('Key').fill('LOG_LEVEL');
  await section.getByLabel('Value').fill('debug');
  await section.getByRole('button', { name: 'Save setting' }).click();
  await expect(section.getByRole('row', { name: 'LOG_LEVEL' })).toContainText('debug');
  await expect(section.getByLabel('Key')).toHaveValue('');
  await section.getByLabel('Key').fill('API_TOKEN');
  await section.getByLabel('Secret').check();
  await expect(section.getByLabel('Value')).toHaveAttribute('type', 'password');
  await section.getByLabel('Value').fill('s3cr3t-value');
  await section.getByRole('button', { name: 'Save setting' }).click();
  await expect(section.getByRole('row', { name: 'API_TOKEN' })).toContainText('•••••• secret');
  await section.getByLabel('Key').fill('PORT');
  await section.getByLabel('Value').fill('1');
  await section.getByRole('button', { name: 'Save setting' }).click();
  await expect(section.getByText("'PORT' is set by Pergola and cannot be overridden.")).toBeVisible();
  await expect(section.getByLabel('Key')).toHaveValue('PORT', { timeout: 1000 });
  await page.reload();
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  await expect(section.getByRole('row', { name: 'API_TOKEN' })).toBeVisible();
  expect(await page.content()).not.toContain('s3cr3t-value');
  await section.getByRole('button', { name: 'Remove LOG_LEVEL' }).click();
  await expect(section.getByRole('row', { name: 'LOG_LEVEL' })).toHaveCount(0);
  await expect(section.getByRole('row')).toHaveCount(2); // header + API_TOKEN
});

test('a deployed build runs on its stage; suspend stops it and resume starts it again', async ({ page, consoleErrors }, testInfo) => {
  const port = testInfo.project.name === 'sqlite' ? 3411 : 3412;
  const project = await createProject(page);
  await createStage(page, 'QA', { type: 'qa' });
  await open(page, `/projects/${project}/builds`);
  await expect(page.getByText('No builds yet.')).toBeVisible();
  // Uploaded through the page's file input, packed as the page says: `tar czf build.tar.gz -C DIR .`.
  const input = page.getByLabel('Build archive');
  const bad = packBuild({ 'pergola.toml': '[[component]]\nname = "web"\nkind = "service"\ncommand = "sh"\nport = 0\n' }, { dot: true });
  await input.setInputFiles({ name: 'build.tar.gz', mimeType: 'application/gzip', buffer: bad });
  await expect(page.getByRole('alert')).toContainText("Invalid manifest, line 1: component 'web': port must be between 1 and 65535");
  const manifest =
    `version = "0.1.0"\n\n[[component]]\nname = "web"\nkind = "service"\ncommand = "sh"\n` +
    `args = ["-c", "exec python3 -m http.server $PORT --bind 127.0.0.1"]\nport = ${port}\n` +
    `health = { path = "/", interval_secs = 1 }\n`;
  const archive = packBuild(
    { 'pergola.toml': manifest, 'index.html': '<!DOCTYPE html><title>shop</title><h1>Shop, as uploaded</h1>\n' },
    { dot: true },
  );
  const digest = `sha256:${crypto.createHash('sha256').update(archive).digest('hex')}`;
  await input.setInputFiles({ name: 'build.tar.gz', mimeType: 'application/gzip', buffer: archive });
  await expect(page.getByRole('status').filter({ hasText: 'Build 1 (0.1.0) uploaded' })).toContainText(digest);
  const item = page.getByRole('listitem', { name: 'Build 1' });
  await expect(item).toContainText('web (service)');
  await expect(item.locator('code[title]')).toHaveText(digest.slice(0, 'sha256:'.length + 12));
  await expect(item.locator('code[title]')).toHaveAttribute('title', digest);
  await expect(item).toContainText(`${archive.length} bytes`);
  await expect(item).toContainText('by admin,');
  await expect(item.getByRole('definition').last()).toHaveText('no stage');

  await open(page, `/projects/${project}/stages/qa`);
  await expect(page.getByText('No release deployed yet.')).toBeVisible();
  await page.getByLabel('Build').selectOption('1');
  await page.getByRole('button', { name: 'Deploy' }).click();
  await expect(page.getByText(/Release #1 — build 1 \(0\.1\.0\)/)).toBeVisible();
  const row = page.getByRole('row', { name: 'web' });
  await expect(row.getByRole('cell').nth(1)).toHaveText('running');
  await expect(row.getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });
  expect((await page.request.get(`http://127.0.0.1:${port}/`)).status()).toBe(200);
  // The share link, served by Pergola as a reverse proxy by host name.
  const share = `http://web.qa.${project}.localhost:${new URL(page.url()).port}/`;
  await expect(page.getByRole('list', { name: 'Share links' })).toContainText(share);
  const served = await page.goto(share);
  expect(served?.status()).toBe(200);
  // The build's own index.html, from the uploaded archive.
  await expect(page.getByRole('heading', { name: 'Shop, as uploaded' })).toBeVisible();

  await open(page, `/projects/${project}`);
  const card = page.getByRole('article', { name: 'QA', exact: true });
  await expect(card).toContainText('#1 (build 1, 0.1.0)');
  await expect(card.getByRole('list', { name: 'Components' })).toContainText('running · healthy');
  // The Builds page says where each build runs.
  await open(page, `/projects/${project}/builds`);
  await expect(page.getByRole('list', { name: 'Stages running build 1' })).toContainText('QA');
  await expect(page.getByRole('list', { name: 'Stages running build 1' })).toContainText('release 1, running');

  await open(page, `/projects/${project}/stages/qa/settings`);
  await page.getByRole('button', { name: 'Suspend stage' }).click();
  await expect(page.getByRole('button', { name: 'Resume stage' })).toBeVisible();
  await expect(page.request.get(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  const suspended = await page.goto(share);
  expect(suspended?.status()).toBe(503);
  await expect(page.getByRole('heading', { name: 'Stage suspended' })).toBeVisible();
  await open(page, `/projects/${project}/stages/qa`);
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(1)).toHaveText('stopped');

  await open(page, `/projects/${project}/stages/qa/settings`);
  await page.getByRole('button', { name: 'Resume stage' }).click();
  await expect(page.getByRole('button', { name: 'Suspend stage' })).toBeVisible();
  await open(page, `/projects/${project}/stages/qa`);
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });
  expect((await page.goto(share))?.status()).toBe(200);
  // Leave nothing running.
  await open(page, `/projects/${project}/stages/qa/settings`);
  await page.getByRole('button', { name: 'Suspend stage' }).click();
  await expect(page.getByRole('button', { name: 'Resume stage' })).toBeVisible();
});

test('the Builds page shows why the server refuses an archive', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await open(page, `/projects/${project}/builds`);
  // An archive with an entry outside it, dropped on the page.
  const dir = fs.mkdtempSync('/tmp/pergola-e2e-hostile-');
  fs.mkdirSync(`${dir}/build`);
  fs.writeFileSync(`${dir}/build/pergola.toml`, '[[component]]\nname = "once"\nkind = "job"\ncommand = "/bin/true"\n');
  fs.writeFileSync(`${dir}/evil`, 'x');
  const hostile = execFileSync('tar', ['-czPf', '-', '-C', `${dir}/build`, 'pergola.toml', '../evil']);
  fs.rmSync(dir, { recursive: true });
  await page.locator('#build-archive').locator('..').evaluate((zone, bytes) => {
    const files = new DataTransfer();
    files.items.add(new File([new Uint8Array(bytes)], 'hostile.tar.gz', { type: 'application/gzip' }));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: files, bubbles: true, cancelable: true }));
  }, [...hostile]);
  await expect(page.getByRole('alert')).toHaveText("The archive was refused: '../evil' has a '..' component.");
  await expect(page.getByText('No builds yet.')).toBeVisible();
  // A file that is no archive is turned down before anything is sent.
  await page.getByLabel('Build archive').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hi') });
  await expect(page.getByRole('alert')).toContainText("'notes.txt' is not a build archive");
  // A good one, dropped, is listed.
  const good = packBuild({ 'pergola.toml': '[[component]]\nname = "once"\nkind = "job"\ncommand = "/bin/true"\n' });
  await page.locator('#build-archive').locator('..').evaluate((zone, bytes) => {
    const files = new DataTransfer();
    files.items.add(new File([new Uint8Array(bytes)], 'good.tgz', { type: 'application/gzip' }));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: files, bubbles: true, cancelable: true }));
  }, [...good]);
  await expect(page.getByRole('status').filter({ hasText: 'Build 1 uploaded' })).toBeVisible();
  await expect(page.getByRole('listitem', { name: 'Build 1' })).toContainText('once (job)');
});

test('share links pass protocol upgrades (WebSockets) through to the component', async ({ page, consoleErrors }, testInfo) => {
  const port = testInfo.project.name === 'sqlite' ? 3421 : 3422;
  // A component speaking a minimal upgrade protocol: "Upgrade: echo", then it echoes bytes.
  // The release runs from a read-only copy of the uploaded build, in a sandbox.
  const script = 'echo.py';
  const echo = [
    'import os, socket, threading',
    'def serve(c):',
    '    req = b""',
    '    while b"\\r\\n\\r\\n" not in req:',
    '        chunk = c.recv(1024)',
    '        if not chunk: return c.close()',
    '        req += chunk',
    '    if b"upgrade: echo" in req.lower():',
    '        c.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n")',
    '        while True:',
    '            data = c.recv(1024)',
    '            if not data: break',
    '            c.sendall(data)',
    '    else:',
    '        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")',
    '    c.close()',
    's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
    's.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen()',
    'while True:',
    '    conn, _ = s.accept(); threading.Thread(target=serve, args=(conn,), daemon=True).start()',
  ].join('\n');
  const project = await createProject(page);
  await createStage(page, 'QA', { type: 'qa' });
  const serverPort = Number(new URL(page.url()).port);
  const apiBase = `http://127.0.0.1:${serverPort}/api/v1/projects/${project}`;
  const manifest = `[[component]]\nname = "echo"\nkind = "service"\ncommand = "python3"\nargs = ["${script}"]\nport = ${port}\n`;
  const build = await uploadBuild(page, project, { 'pergola.toml': manifest, [script]: echo });
  expect((await api(page).post(`${apiBase}/stages/qa/releases`, { data: { build } })).status()).toBe(201);
  await expect.poll(async () => (await page.request.get(`http://127.0.0.1:${port}/`).then((r) => r.status()).catch(() => 0))).toBe(200);
  // A raw socket carries no share cookie: open the stage to anyone with the link (a
  // members-only stage answers an upgrade without one with 401, before the component).
  expect((await api(page).patch(`${apiBase}/stages/qa`, { data: { visibility: 'public' } })).status()).toBe(200);

  const echoed = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(serverPort, '127.0.0.1', () => {
      socket.write(`GET /chat HTTP/1.1\r\nHost: echo.qa.${project}.localhost:${serverPort}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n`);
    });
    let received = '';
    socket.on('data', (data) => {
      received += data.toString();
      if (received.includes('\r\n\r\n') && !received.includes('ping-pong')) socket.write('ping-pong');
      if (received.endsWith('ping-pong')) {
        socket.end();
        resolve(received);
      }
    });
    socket.on('error', reject);
    setTimeout(() => reject(new Error(`no echo; got: ${received}`)), 10_000);
  });
  expect(echoed).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
  expect(echoed.toLowerCase()).toContain('upgrade: echo');
  expect(echoed.endsWith('ping-pong')).toBe(true);
  await api(page).post(`${apiBase}/stages/qa/suspend`);
});

test('a configuration change reaches the application with the next release', async ({ page, consoleErrors }, testInfo) => {
  const port = testInfo.project.name === 'sqlite' ? 3431 : 3432;
  // A component that shows its GREETING setting.
  const script = 'greeting.py';
  const greeting = [
    'import http.server, os',
    'class H(http.server.BaseHTTPRequestHandler):',
    '    def do_GET(self):',
    '        body = ("<!DOCTYPE html><title>greeting</title><h1>" + os.environ.get("GREETING", "none") + "</h1>").encode()',
    '        self.send_response(200); self.send_header("Content-Type", "text/html"); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)',
    '    def log_message(self, *args): pass',
    'http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()',
  ].join('\n');
  const project = await createProject(page);
  await createStage(page, 'QA', { type: 'qa' });
  const serverPort = new URL(page.url()).port;
  const apiBase = `http://127.0.0.1:${serverPort}/api/v1/projects/${project}`;
  const manifest = `[[component]]\nname = "web"\nkind = "service"\ncommand = "python3"\nargs = ["${script}"]\nport = ${port}\nhealth = { path = "/", interval_secs = 1 }\n`;
  expect(await uploadBuild(page, project, { 'pergola.toml': manifest, [script]: greeting })).toBe(1);

  // Set the value in the dashboard, deploy, see it through the share link.
  await open(page, `/projects/${project}/stages/qa/settings`);
  const config = page.getByRole('region', { name: 'Configuration' });
  await config.getByLabel('Key').fill('GREETING');
  await config.getByLabel('Value').fill('hello');
  await config.getByRole('button', { name: 'Save setting' }).click();
  await expect(config.getByRole('row', { name: 'GREETING' })).toContainText('hello');
  await open(page, `/projects/${project}/stages/qa`);
  await page.getByLabel('Build').selectOption('1');
  await page.getByRole('button', { name: 'Deploy' }).click();
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });
  const share = `http://web.qa.${project}.localhost:${serverPort}/`;
  await page.goto(share);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('hello');

  // A change applies with the next release, not before.
  await open(page, `/projects/${project}/stages/qa/settings`);
  await config.getByLabel('Key').fill('GREETING');
  await config.getByLabel('Value').fill('bye');
  await config.getByRole('button', { name: 'Save setting' }).click();
  await expect(config.getByRole('row', { name: 'GREETING' })).toContainText('bye');
  await page.goto(share);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('hello');
  await open(page, `/projects/${project}/stages/qa`);
  await page.getByLabel('Build').selectOption('1');
  await page.getByRole('button', { name: 'Deploy' }).click();
  await expect(page.getByText(/Release #2 — build 1/)).toBeVisible();
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });
  await page.goto(share);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('bye');
  await api(page).post(`${apiBase}/stages/qa/suspend`);
});

test('first run: "Try the demo app" deploys a running demo with a live share link', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await page.getByRole('button', { name: 'Try the demo app' }).click();
  await expect(page).toHaveURL(`/projects/${project}/stages/demo`, { timeout: 30_000 });
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });
  await expect(page.getByRole('row', { name: 'migrate' }).getByRole('cell').nth(1)).toHaveText('completed');
  await expect(page.getByRole('row', { name: 'report' })).toBeVisible();
  await expect(page.getByRole('row', { name: 'worker' }).getByRole('cell').nth(1)).toHaveText('running');
  await expect(page.getByRole('row', { name: 'worker' })).toContainText('worker');
  // Monitoring: health history, uptime, and what happened so far.
  await expect(page.getByRole('row', { name: 'web' }).getByRole('img', { name: /Health history: \d+ of the last \d+ probes healthy/ })).toBeVisible();
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(4)).toHaveText(/^\d+ (s|min \d+ s)$/);
  const timeline = page.getByRole('list', { name: 'Events timeline' });
  await expect(timeline).toContainText('Release 1 deployed: build 1 (demo).');
  await expect(timeline).toContainText('Stage \'Demo\' created as DEV.');
  await expect(timeline).toContainText('migrate completed');
  await expect(timeline).toContainText('web is healthy', { timeout: 20_000 });
  const href = await page.getByRole('list', { name: 'Share links' }).getByRole('link').getAttribute('href');
  expect(href).toBe(`http://web.demo.${project}.localhost:${new URL(page.url()).port}/`);
  await page.goto(href!);
  await expect(page.getByRole('heading', { name: 'Pergola demo' })).toBeVisible();
  await expect(page.getByText(`of stage demo in project ${project}`)).toBeVisible();
  await page.reload();
  await expect(page.locator('#visits')).toHaveText('2');

  // The walk the issue asks for, on the demo build: a config change seen after redeploy,
  // suspend → 503, resume → served again, the visit counter kept on storage throughout.
  await open(page, `/projects/${project}/stages/demo/settings`);
  const config = page.getByRole('region', { name: 'Configuration' });
  await config.getByLabel('Key').fill('GREETING');
  await config.getByLabel('Value').fill('hello from the dashboard');
  await config.getByRole('button', { name: 'Save setting' }).click();
  await expect(config.getByRole('row', { name: 'GREETING' })).toContainText('hello from the dashboard');
  await page.goto(href!);
  await expect(page.getByText('Greeting: (not set)')).toBeVisible();
  await open(page, `/projects/${project}/stages/demo`);
  await page.getByLabel('Build').selectOption('1');
  await page.getByRole('button', { name: 'Deploy' }).click();
  await expect(page.getByText(/Release #2 — build 1 \(demo\)/)).toBeVisible();
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });
  await page.goto(href!);
  await expect(page.getByText('Greeting: hello from the dashboard')).toBeVisible();
  await expect(page.locator('#visits')).toHaveText('4');
  await open(page, `/projects/${project}/stages/demo/settings`);
  await page.getByRole('button', { name: 'Suspend stage' }).click();
  await expect(page.getByRole('button', { name: 'Resume stage' })).toBeVisible({ timeout: 15_000 });
  expect((await page.goto(href!))?.status()).toBe(503);
  await expect(page.getByRole('heading', { name: 'Stage suspended' })).toBeVisible();
  await open(page, `/projects/${project}/stages/demo/settings`);
  await page.getByRole('button', { name: 'Resume stage' }).click();
  await expect(page.getByRole('button', { name: 'Suspend stage' })).toBeVisible();
  await open(page, `/projects/${project}/stages/demo`);
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });
  expect((await page.goto(href!))?.status()).toBe(200);
  await expect(page.getByText('Greeting: hello from the dashboard')).toBeVisible();
  await expect(page.locator('#visits')).toHaveText('5');
  await open(page, `/projects/${project}/stages/demo`);
  const events = page.getByRole('list', { name: 'Events timeline' });
  await expect(events).toContainText('Setting GREETING set; it applies with the next release.');
  await expect(events).toContainText('Release 2 deployed: build 1 (demo).');
  await expect(events).toContainText('Resumed with its last release.');
  await expect(events.locator('li[data-kind="suspended"]')).toHaveCount(1);
  // The offer is for the first run only.
  await open(page, `/projects/${project}`);
  await expect(page.getByRole('article', { name: 'Demo', exact: true })).toContainText('web');
  await expect(page.getByRole('button', { name: 'Try the demo app' })).toHaveCount(0);
  await api(page).post(`/api/v1/projects/${project}/stages/demo/suspend`);
});

test('a suspend lasts at most the stage\'s grace period, with progress per component', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Prod', { type: 'prod' });
  // The grace period is a per-stage setting.
  await open(page, `/projects/${project}/stages/prod/settings`);
  const grace = page.getByLabel('Grace period (seconds)');
  await expect(grace).toHaveValue('5');
  await grace.fill('0');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await expect(page.getByText('The grace period must be a whole number of seconds from 1 to 3600.')).toBeVisible();
  await expect(grace).toHaveAttribute('aria-invalid', 'true');
  await grace.fill('6');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Saved.' })).toBeVisible();
  await expect(page.getByRole('region', { name: 'Suspend or resume' })).toContainText('grace period of 6 seconds');

  // A service that ignores SIGTERM, and a worker that honours it.
  const text =
    '[[component]]\nname = "stubborn"\nkind = "service"\ncommand = "sh"\n' +
    'args = ["-c", "trap \'\' TERM; echo ignoring SIGTERM; while true; do sleep 1; done"]\n\n' +
    '[[component]]\nname = "polite"\nkind = "worker"\ncommand = "sh"\nargs = ["-c", "exec sleep 600"]\n';
  expect(await uploadBuild(page, project, { 'pergola.toml': text })).toBe(1);
  await open(page, `/projects/${project}/stages/prod`);
  await page.getByLabel('Build').selectOption('1');
  await page.getByRole('button', { name: 'Deploy' }).click();
  await expect(page.getByRole('row', { name: 'stubborn' }).getByRole('cell').nth(1)).toHaveText('running');
  await expect(page.getByRole('row', { name: 'polite' }).getByRole('cell').nth(1)).toHaveText('running');

  // Suspend: "suspending" while the stubborn one has its grace period, then "suspended".
  const answer = await api(page).post(`/api/v1/projects/${project}/stages/prod/suspend`);
  expect((await answer.json()).status).toBe('suspending');
  // Traffic stops at once, while the components still shut down.
  const shared = await page.goto(`http://stubborn.prod.${project}.localhost:${new URL(page.url()).port}/`);
  expect(shared?.status()).toBe(503);
  await expect(page.getByText(`Stage 'Prod' of project '${project}' is being suspended.`)).toBeVisible();
  await open(page, `/projects/${project}/stages/prod`);
  await expect(page.getByRole('status').filter({ hasText: 'Suspending: every component got SIGTERM' })).toBeVisible();
  await expect(page.getByRole('row', { name: 'stubborn' }).getByRole('cell').nth(1)).toHaveText(/^stopping — killed in \d s unless it exits$/);
  await expect(page.getByRole('row', { name: 'polite' }).getByRole('cell').nth(1)).toHaveText('stopped');
  await expect(page.locator('[data-status]')).toHaveText('suspending');
  await expect(page.locator('[data-status]')).toHaveText('suspended', { timeout: 15_000 });
  await expect(page.getByRole('row', { name: 'stubborn' }).getByRole('cell').nth(1)).toHaveText('stopped');
  const timeline = page.getByRole('list', { name: 'Events timeline' });
  await expect(timeline).toContainText('stubborn was still running after the 6 s grace period; killed');
  await expect(timeline).toContainText('Suspended: every component has stopped; exited after SIGTERM: polite; killed after the grace period: stubborn.');
  await expect(timeline.locator('li[data-kind="killed"]')).toHaveCount(1);

  // The same from the settings page: it follows the suspend until it has settled.
  await open(page, `/projects/${project}/stages/prod/settings`);
  await page.getByRole('button', { name: 'Resume stage' }).click();
  await expect(page.getByRole('button', { name: 'Suspend stage' })).toBeVisible();
  await page.getByRole('button', { name: 'Suspend stage' }).click();
  const lifecycle = page.getByRole('region', { name: 'Suspend or resume' });
  await expect(lifecycle).toContainText('This stage is being suspended');
  await expect(lifecycle.getByRole('link', { name: "Follow each component's progress on the stage page" })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Resume stage' })).toBeVisible({ timeout: 15_000 });
  // Resume is offered at once (it waits for the stop), and the page follows until it settled.
  await expect(lifecycle).not.toContainText('being suspended', { timeout: 15_000 });
  await expect(lifecycle).toContainText('suspended');

  // And on the project page, whose card follows it too.
  await page.getByRole('button', { name: 'Resume stage' }).click();
  await expect(page.getByRole('button', { name: 'Suspend stage' })).toBeVisible();
  await api(page).post(`/api/v1/projects/${project}/stages/prod/suspend`);
  await open(page, `/projects/${project}`);
  const card = page.getByRole('article', { name: 'Prod', exact: true });
  await expect(card.locator('[data-status]')).toHaveText('suspending');
  await expect(card.locator('[data-status]')).toHaveText('suspended', { timeout: 15_000 });

  // Resume "anytime" (the seed): asked while the stage is still suspending, it takes effect as
  // soon as the stop has finished.
  await api(page).post(`/api/v1/projects/${project}/stages/prod/resume`);
  await open(page, `/projects/${project}/stages/prod`);
  await expect(page.getByRole('row', { name: 'stubborn' }).getByRole('cell').nth(1)).toHaveText('running');
  expect((await (await api(page).post(`/api/v1/projects/${project}/stages/prod/suspend`)).json()).status).toBe('suspending');
  await open(page, `/projects/${project}/stages/prod/settings`);
  await expect(page.getByRole('region', { name: 'Suspend or resume' })).toContainText('This stage is being suspended');
  await page.getByRole('button', { name: 'Resume stage' }).click();
  await open(page, `/projects/${project}/stages/prod`);
  await expect(page.locator('[data-status]')).toHaveText('running', { timeout: 15_000 });
  await expect(page.getByRole('row', { name: 'stubborn' }).getByRole('cell').nth(1)).toHaveText('running');
  await expect(page.getByRole('list', { name: 'Events timeline' })).toContainText('Resume requested while suspending');
});

test('requests from another site or host are refused and change nothing', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'QA', { type: 'qa' });
  const stage = `/api/v1/projects/${project}/stages/qa`;

  // A page on another site posting to the API (the browser adds Origin / Sec-Fetch-Site).
  const fromEvil = await api(page).post(`${stage}/suspend`, { headers: { Origin: 'http://evil.example' } });
  expect(fromEvil.status()).toBe(403);
  expect(fromEvil.headers()['content-type']).toBe('application/problem+json');
  expect((await fromEvil.json()).type).toBe('urn:pergola:problem:forbidden');
  for (const headers of [{ Origin: 'null' }, { 'Sec-Fetch-Site': 'cross-site' }, { 'Sec-Fetch-Site': 'same-site' }]) {
    expect((await api(page).post(`${stage}/suspend`, { headers })).status(), JSON.stringify(headers)).toBe(403);
  }
  expect((await api(page).delete(stage, { headers: { Origin: 'http://evil.example' } })).status()).toBe(403);
  const after = await page.request.get(stage);
  expect(after.status()).toBe(200);
  expect((await after.json()).status).toBe('running');

  // A foreign host name (DNS rebinding) reaches no dashboard and no API; /healthz answers anyway.
  const rebound = await page.request.get('/', { headers: { Host: 'evil.example' } });
  expect(rebound.status()).toBe(421);
  expect(await rebound.text()).not.toContain('Pergola Stages</title>');
  expect((await page.request.get(stage, { headers: { Host: 'evil.example' } })).status()).toBe(421);
  expect((await page.request.get('/healthz', { headers: { Host: 'evil.example' } })).status()).toBe(200);

  // The dashboard's own pages: framing refused, and every inline script carries the nonce the
  // policy names (this page hydrates under it — no console error, as in every test).
  const response = await open(page, `/projects/${project}`);
  const headers = response!.headers();
  const csp = headers['content-security-policy'];
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).toContain("default-src 'self'");
  expect(headers['x-frame-options']).toBe('DENY');
  expect(headers['x-content-type-options']).toBe('nosniff');
  const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
  expect(nonce, csp).toBeTruthy();
  const scripts = (await response!.text()).match(/<script[^>]*>/g) ?? [];
  expect(scripts.length).toBeGreaterThan(0);
  for (const tag of scripts) expect(tag).toContain(`nonce="${nonce}"`);

  // The dashboard itself still changes things (same origin): suspend from the settings page.
  await open(page, `/projects/${project}/stages/qa/settings`);
  await page.getByRole('button', { name: 'Suspend stage' }).click();
  await expect(page.getByRole('button', { name: 'Resume stage' })).toBeVisible();
  expect((await (await page.request.get(stage)).json()).status).toMatch(/^suspend/);
});
