import { api, createProject, createStage, expect, open, test, uploadBuild } from './helpers';

const manifest = (version: string, extra = '') =>
  `version = "${version}"\n\n[[component]]\nname = "web"\nkind = "service"\ncommand = "sh"\n` +
  `args = ["-c", "exec python3 -m http.server $PORT --bind 127.0.0.1"]\n${extra}`;
const worker = '\n[[component]]\nname = "worker"\nkind = "worker"\ncommand = "sh"\nargs = ["-c", "exec sleep 600"]\n';

test('a DEV release is promoted to QA: the differences are shown (secrets masked), QA keeps its own configuration', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Dev');
  await createStage(page, 'QA', { type: 'qa' });
  await createStage(page, 'Prod', { type: 'prod' });
  const base = `/api/v1/projects/${project}`;
  const b1 = await uploadBuild(page, project, { 'pergola.toml': manifest('1.0') });
  const b2 = await uploadBuild(page, project, { 'pergola.toml': manifest('2.0', worker) });
  expect((await api(page).post(`${base}/stages/qa/releases`, { data: { build: b1 } })).status()).toBe(201);
  expect((await api(page).post(`${base}/stages/dev/releases`, { data: { build: b2 } })).status()).toBe(201);
  await api(page).put(`${base}/stages/dev/config/LOG_LEVEL`, { data: { value: 'debug' } });
  await api(page).put(`${base}/stages/qa/config/LOG_LEVEL`, { data: { value: 'info' } });
  await api(page).put(`${base}/stages/dev/config/API_TOKEN`, { data: { value: 'dev-s3cret', secret: true } });
  await api(page).put(`${base}/stages/qa/config/API_TOKEN`, { data: { value: 'qa-s3cret', secret: true } });

  await open(page, `/projects/${project}/stages/dev`);
  const section = page.getByRole('region', { name: 'Promote' });
  // The next type first.
  const target = section.getByLabel('Promote to');
  await expect(target.locator('option')).toHaveText([/^QA · QA \(qa\)$/, /^PROD · Prod \(prod\)$/]);
  const changes = section.getByRole('group', { name: 'What changes' });
  await expect(changes).toContainText(`Runs build ${b2} (2.0) instead of build ${b1} (1.0).`);
  await expect(changes).toContainText('New component: worker (worker).');
  const config = changes.getByRole('table', { name: 'Configuration that differs' });
  await expect(config.getByRole('row', { name: 'LOG_LEVEL' })).toContainText('debuginfo');
  await expect(config.getByRole('row', { name: 'API_TOKEN' })).toContainText('(secret)');
  await expect(page.locator('body')).not.toContainText('s3cret');
  // PROD has nothing yet.
  await target.selectOption('prod');
  await expect(changes).toContainText(`Runs build ${b2} (2.0) instead of nothing.`);
  await target.selectOption('qa');
  await section.getByRole('button', { name: 'Promote to qa' }).click();
  await expect(section.getByRole('status')).toContainText(`Promoted: release #2 of qa runs build ${b2}.`);

  // QA runs DEV's build with its own configuration, and says where it came from.
  const releases = await (await api(page).get(`${base}/stages/qa/releases`)).json();
  expect([releases[0].build_number, releases[0].promoted_from]).toEqual([b2, 'dev']);
  await section.getByRole('link', { name: 'qa' }).click();
  await expect(page).toHaveURL(`/projects/${project}/stages/qa`);
  await expect(page.getByRole('list', { name: 'Events timeline' })).toContainText(`build ${b2} (2.0), promoted from 'dev' (its release 1)`);
  const qa = await (await api(page).get(`${base}/stages/qa/config`)).json();
  expect(qa.find((c: { key: string }) => c.key === 'LOG_LEVEL').value).toBe('info');

  // The compare view: same build now, the settings still differ (secrets by value, never shown).
  await open(page, `/projects/${project}`);
  await page.getByRole('link', { name: 'Compare stages' }).click();
  await page.getByLabel('Stage', { exact: true }).selectOption('dev');
  await page.getByLabel('Compared with').selectOption('qa');
  await page.getByRole('button', { name: 'Compare', exact: true }).click();
  await expect(page).toHaveURL(`/projects/${project}/compare?from=dev&to=qa`);
  const table = page.getByRole('table', { name: 'Comparison' });
  await expect(table.getByRole('row', { name: /^Components/ })).toHaveAttribute('data-differs', 'false');
  await expect(table.getByRole('row', { name: /^Type/ })).toHaveAttribute('data-differs', 'true');
  await expect(table.getByRole('row', { name: /^Setting LOG_LEVEL/ })).toContainText('debug');
  await expect(table.getByRole('row', { name: /^Setting API_TOKEN/ })).toContainText('(secret)');
  await expect(page.locator('body')).not.toContainText('s3cret');
  await api(page).post(`${base}/stages/qa/suspend`);
  await api(page).post(`${base}/stages/dev/suspend`);
});

test('a stage is duplicated from its settings: type, configuration and grace period, with its build', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'QA', { type: 'qa' });
  const base = `/api/v1/projects/${project}`;
  const build = await uploadBuild(page, project, { 'pergola.toml': manifest('1.0') });
  await api(page).put(`${base}/stages/qa/config/API_TOKEN`, { data: { value: 'the-s3cret', secret: true } });
  await api(page).patch(`${base}/stages/qa`, { data: { grace_secs: 12 } });
  await api(page).post(`${base}/stages/qa/releases`, { data: { build } });
  await open(page, `/projects/${project}/stages/qa/settings`);
  const section = page.getByRole('region', { name: 'Duplicate stage' });
  await section.getByLabel('Name of the copy').fill('QA copy');
  await section.getByLabel('Deploy its current build too').check();
  await section.getByRole('button', { name: 'Duplicate stage' }).click();
  await expect(page).toHaveURL(`/projects/${project}/stages/qa-copy`);
  await expect(page.getByRole('heading', { level: 1, name: 'QA copy' })).toBeVisible();
  const copy = await (await api(page).get(`${base}/stages/qa-copy`)).json();
  expect([copy.stage_type, copy.grace_secs]).toEqual(['qa', 12]);
  const config = await (await api(page).get(`${base}/stages/qa-copy/config`)).json();
  expect(config).toEqual([expect.objectContaining({ key: 'API_TOKEN', value: null, secret: true })]);
  const compared = await (await api(page).get(`${base}/stages/qa/compare/qa-copy`)).json();
  expect([compared.build_differs, compared.config]).toEqual([false, []]);
  // A taken name is refused with a suggestion, on the page.
  await open(page, `/projects/${project}/stages/qa/settings`);
  await page.getByRole('region', { name: 'Duplicate stage' }).getByLabel('Name of the copy').fill('QA copy');
  await page.getByRole('region', { name: 'Duplicate stage' }).getByRole('button', { name: 'Duplicate stage' }).click();
  await expect(page.getByRole('region', { name: 'Duplicate stage' })).toContainText("Stage ID 'qa-copy' is already taken. Try 'qa-copy-2'.");
  for (const stage of ['qa', 'qa-copy']) await api(page).post(`${base}/stages/${stage}/suspend`);
});
