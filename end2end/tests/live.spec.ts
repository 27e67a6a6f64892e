import { api, createProject, createStage, expect, open, test, uploadBuild } from './helpers';

// Pages follow what changes — through the API, the CLI, the runtime — without polling or a
// reload: each open page holds one live stream of changes.

/** Marks the page so that a reload (which would clear the mark) is noticed. */
async function markPage(page: import('@playwright/test').Page) {
  await page.evaluate(() => ((window as unknown as { stillHere: boolean }).stillHere = true));
}
async function notReloaded(page: import('@playwright/test').Page) {
  expect(await page.evaluate(() => (window as unknown as { stillHere?: boolean }).stillHere)).toBe(true);
}
/** Keeps every EventSource the page opens in `window.streams`, for the test to look at or cut. */
async function trackStreams(page: import('@playwright/test').Page) {
  await page.addInitScript(() => {
    const w = window as unknown as { EventSource: typeof EventSource; streams: EventSource[] };
    w.streams = [];
    const Original = w.EventSource;
    w.EventSource = class extends Original {
      constructor(url: string | URL, init?: EventSourceInit) {
        super(url, init);
        w.streams.push(this);
      }
    };
  });
}

test('a change made elsewhere appears on an open project page within 2 s, without a reload', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  const card = await createStage(page, 'Dev');
  await expect(card.getByText('running', { exact: true })).toBeVisible();
  await markPage(page);

  // Suspended through the API (as the CLI does): the card says so.
  expect((await api(page).post(`/api/v1/projects/${project}/stages/dev/suspend`)).status()).toBe(200);
  await expect(card.getByText('suspended', { exact: true })).toBeVisible({ timeout: 2_000 });
  // A stage created elsewhere appears; one deleted elsewhere goes to the archived list.
  const created = await api(page).post(`/api/v1/projects/${project}/stages`, { data: { name: 'QA', type: 'qa' } });
  expect(created.status()).toBe(201);
  await expect(page.getByRole('article', { name: 'QA', exact: true })).toBeVisible({ timeout: 2_000 });
  expect((await api(page).delete(`/api/v1/projects/${project}/stages/qa`)).status()).toBeLessThan(300);
  await expect(page.getByRole('article', { name: 'QA', exact: true })).toHaveCount(0, { timeout: 2_000 });
  await notReloaded(page);
});

test('the stage page follows a component: output, a crash and its restart, with pause and filter', async ({ page, consoleErrors }, testInfo) => {
  const project = await createProject(page);
  await createStage(page, 'Dev');
  // A worker that counts, then crashes (and is restarted).
  const script = 'counter.py';
  const counter = [
    'import sys, time',
    'for n in range(1, 7):',
    '    print(f"tick {n}", flush=True)',
    '    time.sleep(0.4)',
    'print("giving up", file=sys.stderr, flush=True)',
    'sys.exit(3)',
  ].join('\n');
  const manifest = `[[component]]\nname = "counter"\nkind = "worker"\ncommand = "python3"\nargs = ["${script}"]\n`;
  const build = await uploadBuild(page, project, { 'pergola.toml': manifest, [script]: counter });
  await open(page, `/projects/${project}/stages/dev`);
  await markPage(page);
  const deployed = await api(page).post(`/api/v1/projects/${project}/stages/dev/releases`, { data: { build } });
  expect(deployed.status(), await deployed.text()).toBe(201);

  // The component, its lines as they are printed, the crash in the timeline.
  await expect(page.getByRole('row', { name: 'counter' })).toBeVisible({ timeout: 3_000 });
  const output = page.getByLabel('Output lines of counter');
  await expect(output).toContainText('tick 1', { timeout: 3_000 });
  await expect(output).toContainText('tick 4', { timeout: 3_000 });
  const timeline = page.getByRole('list', { name: 'Events timeline' });
  await expect(timeline.locator('li[data-kind="crashed"]').first()).toBeVisible({ timeout: 6_000 });
  // Whose each line is: the component's stdout unmarked, its stderr marked "!".
  await expect(output).toContainText(/\d\d:\d\d:\d\d {3}tick 1/);
  await expect(output).toContainText(/\d\d:\d\d:\d\d ! giving up/);

  // Filter: only the lines with the text.
  await page.getByLabel('Filter output').fill('giving');
  await expect(output).toContainText('giving up');
  await expect(output).not.toContainText('tick');
  await page.getByLabel('Filter output').fill('');

  // Paused, the output holds still while the component goes on printing; followed again,
  // it catches up.
  await page.getByRole('button', { name: 'Pause output' }).click();
  await expect(page.getByText('Paused: new lines are not shown.')).toBeVisible();
  const held = await output.textContent();
  await page.waitForTimeout(1_500);
  expect(await output.textContent()).toBe(held);
  await page.getByRole('button', { name: 'Follow output' }).click();
  await expect.poll(async () => (await output.textContent())?.length ?? 0, { timeout: 5_000 }).toBeGreaterThan(held?.length ?? 0);

  // The download holds the same lines as text.
  const download = await page.request.get(`/api/v1/projects/${project}/stages/dev/components/counter/logs?format=text`);
  expect(download.headers()['content-type']).toBe('text/plain; charset=utf-8');
  expect(await download.text()).toMatch(/ tick 1\n/);
  await notReloaded(page);
  expect(testInfo.project.name).toMatch(/sqlite|postgres/);
  await api(page).post(`/api/v1/projects/${project}/stages/dev/suspend`);
});

// (The browser logs the refused streams as errors, which is what this test provokes.)
test('a page says when its stream is down, and catches up when it is back', async ({ page }) => {
  // The page's streams, to cut them as a server going away would.
  await trackStreams(page);
  const project = await createProject(page);
  const card = await createStage(page, 'Dev');
  await markPage(page);
  // The server is "away": new streams are refused, the open one breaks off.
  await page.route('**/changes', (route) => route.abort());
  await page.evaluate(() => {
    for (const s of (window as unknown as { streams: EventSource[] }).streams) {
      s.close();
      s.dispatchEvent(new Event('error'));
    }
  });
  await expect(page.getByText('Offline — reconnecting…')).toBeVisible({ timeout: 5_000 });
  // A change while offline is not lost: the page reads again once the stream is back.
  expect((await api(page).post(`/api/v1/projects/${project}/stages/dev/suspend`)).status()).toBe(200);
  await page.waitForTimeout(1_500);
  await expect(card.getByText('running', { exact: true })).toBeVisible();
  await page.unroute('**/changes');
  await expect(page.getByText('Offline — reconnecting…')).toHaveCount(0, { timeout: 10_000 });
  await expect(card.getByText('suspended', { exact: true })).toBeVisible({ timeout: 2_000 });
  await notReloaded(page);
});

test('a component printing without pause costs its page only the new lines', async ({ page, consoleErrors }) => {
  const project = await createProject(page);
  await createStage(page, 'Dev');
  const script = 'chatty.py';
  const chatty = ['import time', 'n = 0', 'while True:', '    n += 1', '    print(f"line {n}", flush=True)', '    time.sleep(0.05)'].join('\n');
  const manifest = `[[component]]\nname = "chatty"\nkind = "worker"\ncommand = "python3"\nargs = ["${script}"]\n`;
  const build = await uploadBuild(page, project, { 'pergola.toml': manifest, [script]: chatty });
  await open(page, `/projects/${project}/stages/dev`);
  const deployed = await api(page).post(`/api/v1/projects/${project}/stages/dev/releases`, { data: { build } });
  expect(deployed.status(), await deployed.text()).toBe(201);
  const output = page.getByLabel('Output lines of chatty');
  await expect(output).toContainText('line 10', { timeout: 5_000 });
  await page.waitForTimeout(500);
  // Twenty lines a second for 2 s: the page reads the new lines a few times a second, and
  // not the whole stage (only a sample of metrics, every 10 s, reads that again).
  const reads: string[] = [];
  const count = (request: import('@playwright/test').Request) => reads.push(request.url());
  page.on('request', count);
  await page.waitForTimeout(2_000);
  page.off('request', count);
  const outputReads = reads.filter((url) => url.includes('/api/stage_output')).length;
  const stageReads = reads.filter((url) => url.includes('/api/stage_runtime')).length;
  expect(outputReads).toBeGreaterThanOrEqual(3);
  expect(outputReads).toBeLessThanOrEqual(10);
  expect(stageReads).toBeLessThanOrEqual(1);
  // The newest lines are shown, in order.
  const text = (await output.textContent()) ?? '';
  const numbers = [...text.matchAll(/line (\d+)/g)].map((m) => Number(m[1]));
  expect(numbers.length).toBeGreaterThan(40);
  expect(numbers.every((n, i) => i === 0 || n === numbers[i - 1] + 1)).toBe(true);
  // Leaving the page while it reads new lines (to the project, by its link: the page itself
  // moves on) leaves the dashboard working: no read lands on the page that is gone.
  await markPage(page);
  await page.locator(`main a[href="/projects/${project}"]`).first().click();
  await expect(page).toHaveURL(`/projects/${project}`);
  await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
  await page.waitForTimeout(1_500);
  await notReloaded(page);
  await api(page).post(`/api/v1/projects/${project}/stages/dev/suspend`);
});

test('a tab in the background lets go of its stream, and catches up when shown', async ({ page, consoleErrors }) => {
  await trackStreams(page);
  const project = await createProject(page);
  const card = await createStage(page, 'Dev');
  await markPage(page);
  const open = () =>
    page.evaluate(() => (window as unknown as { streams: EventSource[] }).streams.filter((s) => s.readyState !== 2).length);
  await expect.poll(open).toBe(1);
  // The tab goes to the background (another tab is chosen): its stream is closed, so six
  // such tabs leave the browser its connections to the server.
  const show = (hidden: boolean) =>
    page.evaluate((hidden) => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
  await show(true);
  await expect.poll(open).toBe(0);
  // Meanwhile the stage is suspended elsewhere; the hidden tab does not hear of it.
  expect((await api(page).post(`/api/v1/projects/${project}/stages/dev/suspend`)).status()).toBe(200);
  await page.waitForTimeout(1_500);
  await expect(card.getByText('running', { exact: true })).toBeVisible();
  // Shown again: one stream, and the page reads what changed meanwhile.
  await show(false);
  await expect(card.getByText('suspended', { exact: true })).toBeVisible({ timeout: 2_000 });
  await expect.poll(open).toBe(1);
  await expect(page.getByText('Offline — reconnecting…')).toHaveCount(0);
  await notReloaded(page);
});
