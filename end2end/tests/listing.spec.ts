import { api, createProject, expect, open, test } from './helpers';

// A project with many stages stays usable: search, filters, sort and pages, all in the URL.

test('a project with 200 stages is searched, filtered, sorted and paged', async ({ page, consoleErrors }) => {
  test.setTimeout(120_000);
  const project = await createProject(page);
  const types = ['dev', 'qa', 'prod'];
  for (let n = 0; n < 200; n++) {
    const id = `s${String(n).padStart(3, '0')}`;
    const created = await api(page).post(`/api/v1/projects/${project}/stages`, {
      data: { name: `Stage ${String(n).padStart(3, '0')}`, type: types[n % 3], id },
    });
    expect(created.status(), await created.text()).toBe(201);
    if (n % 10 === 0) {
      const suspended = await api(page).post(`/api/v1/projects/${project}/stages/${id}/suspend`);
      expect(suspended.status()).toBe(200);
    }
  }
  const cards = page.getByRole('list', { name: 'Stages' }).getByRole('article');
  const count = page.getByTestId('stage-count');

  await open(page, `/projects/${project}`);
  await expect(count).toHaveText('48 of 200 stages shown on this page.');
  await expect(cards).toHaveCount(48);
  await expect(cards.first()).toHaveAccessibleName('Stage 000');
  const pages = page.getByRole('navigation', { name: 'Stage pages' });
  await expect(pages.getByRole('link', { name: 'First page' })).toHaveCount(0);

  // The next page continues where the first ended.
  await pages.getByRole('link', { name: 'Next page' }).click();
  await expect(cards.first()).toHaveAccessibleName('Stage 048');
  await expect(cards).toHaveCount(48);
  await expect(pages.getByRole('link', { name: 'First page' })).toBeVisible();

  // Search by name, any case; the count says how many match.
  const search = page.getByRole('search', { name: 'Find stages' });
  await search.getByLabel('Search').fill('STAGE 17');
  await search.getByRole('button', { name: 'Apply' }).click();
  await expect(count).toHaveText('10 of 200 stages match.');
  await expect(cards).toHaveCount(10);
  await expect(cards.first()).toHaveAccessibleName('Stage 170');
  expect(new URL(page.url()).searchParams.get('q')).toBe('STAGE 17');
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);

  // Type and status together: QA stages that are suspended (n % 3 == 1 and n % 10 == 0).
  await search.getByLabel('Search').fill('');
  await search.getByLabel('Type').selectOption('qa');
  await search.getByLabel('Status').selectOption('suspended');
  await search.getByRole('button', { name: 'Apply' }).click();
  await expect(count).toHaveText('7 of 200 stages match.');
  await expect(cards).toHaveText([/Stage 010/, /Stage 040/, /Stage 070/, /Stage 100/, /Stage 130/, /Stage 160/, /Stage 190/]);
  for (const card of await cards.all()) await expect(card.getByText('suspended', { exact: true })).toBeVisible();

  // Sorted by recent change: the stage renamed last comes first. A reload keeps the choice.
  const renamed = await api(page).patch(`/api/v1/projects/${project}/stages/s040`, { data: { name: 'Renamed forty' } });
  expect(renamed.status()).toBe(200);
  await search.getByLabel('Sort').selectOption('updated');
  await search.getByRole('button', { name: 'Apply' }).click();
  await expect(cards.first()).toHaveAccessibleName('Renamed forty');
  await page.reload();
  await expect(cards.first()).toHaveAccessibleName('Renamed forty');
  await expect(search.getByLabel('Status')).toHaveValue('suspended');

  // Nothing matches: said so; Clear brings every stage back.
  await open(page, `/projects/${project}?q=no-such-stage`);
  await expect(count).toHaveText('0 of 200 stages match.');
  await expect(page.getByText('No stage matches.')).toBeVisible();
  await search.getByRole('link', { name: 'Clear' }).click();
  await expect(count).toHaveText('48 of 200 stages shown on this page.');

  // A forged cursor is explained, not a blank page.
  await open(page, `/projects/${project}?cursor=not-a-cursor`);
  await expect(page.getByText('The cursor is not one this server handed out')).toBeVisible();
});
