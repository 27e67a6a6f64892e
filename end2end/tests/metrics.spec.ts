import { api, createProject, createStage, expect, open, test, uploadBuild } from './helpers';

// Metrics: CPU and memory of each component, requests, errors and latency of a service as the
// share-link proxy saw them — charts on the stage page, a sparkline on the card.

test('the stage page charts a service that answers through its share link, the card shows its CPU', async ({ page, context, consoleErrors }, testInfo) => {
  test.setTimeout(90_000);
  const port = testInfo.project.name === 'sqlite' ? 3441 : 3442;
  const script = 'busy.py';
  const busy = [
    'import http.server, os',
    'class H(http.server.BaseHTTPRequestHandler):',
    '    def do_GET(self):',
    '        if self.path == "/boom":',
    '            self.send_response(500); self.send_header("Content-Type", "text/html"); self.send_header("Content-Length", "4"); self.end_headers(); self.wfile.write(b"boom"); return',
    '        sum(i * i for i in range(20000))',
    '        body = b"<!DOCTYPE html><title>busy</title><h1>busy</h1>"',
    '        self.send_response(200); self.send_header("Content-Type", "text/html"); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)',
    '    def log_message(self, *args): pass',
    'http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()',
  ].join('\n');
  const project = await createProject(page);
  await createStage(page, 'QA', { type: 'qa' });
  const serverPort = new URL(page.url()).port;
  const manifest = `[[component]]\nname = "web"\nkind = "service"\ncommand = "python3"\nargs = ["${script}"]\nport = ${port}\nhealth = { path = "/", interval_secs = 1 }\n`;
  const build = await uploadBuild(page, project, { 'pergola.toml': manifest, [script]: busy });
  const base = `/api/v1/projects/${project}/stages/qa`;
  expect((await api(page).post(`${base}/releases`, { data: { build } })).status()).toBe(201);
  expect((await api(page).patch(base, { data: { visibility: 'public' } })).status()).toBe(200);
  await open(page, `/projects/${project}/stages/qa`);
  await expect(page.getByRole('row', { name: 'web' }).getByRole('cell').nth(2)).toHaveText('healthy', { timeout: 20_000 });

  // Traffic through the share link: 20 answers and 5 errors.
  const visitor = await context.newPage();
  const share = `http://web.qa.${project}.localhost:${serverPort}`;
  for (let n = 0; n < 20; n++) expect((await visitor.goto(`${share}/?n=${n}`))!.status()).toBe(200);
  for (let n = 0; n < 5; n++) expect((await visitor.goto(`${share}/boom`))!.status()).toBe(500);
  await visitor.close();

  // Within a sample or two the charts show it, without a reload.
  const metrics = page.getByRole('region', { name: 'Metrics' });
  await expect(metrics.getByRole('img', { name: /^Requests per minute, last hour: latest web \d+\/min$/ })).toBeVisible({ timeout: 30_000 });
  await expect(metrics.getByRole('img', { name: /^CPU, last hour: latest web \d+\.\d %$/ })).toBeVisible({ timeout: 30_000 });
  await expect(metrics.getByRole('img', { name: /^Memory, last hour: latest web \d+\.\d MB$/ })).toBeVisible();
  await expect(metrics.getByRole('img', { name: /^Latency p95, last hour: latest web \d+ ms$/ })).toBeVisible();
  const errors = metrics.getByRole('img', { name: /^Errors \(5xx\), last hour: latest web / });
  await expect(errors).toBeVisible();
  const lines = metrics.locator('svg path[d^="M"]');
  expect(await lines.count()).toBeGreaterThanOrEqual(4);

  // The same figures through the API, and the day's window.
  const json = await (await page.request.get(`${base}/metrics?window=1h`)).json();
  const points = json.components.find((c: { component: string }) => c.component === 'web').points;
  const requests = points.reduce((sum: number, p: { requests: number }) => sum + p.requests, 0);
  const failed = points.reduce((sum: number, p: { errors: number }) => sum + p.errors, 0);
  expect(requests).toBeGreaterThanOrEqual(25);
  expect(failed).toBe(5);
  await metrics.getByRole('button', { name: 'Last 24 hours' }).click();
  await expect(metrics.getByRole('img', { name: /^CPU, last 24 hours: latest web/ })).toBeVisible();

  // The card's sparkline.
  await open(page, `/projects/${project}`);
  const card = page.getByRole('article', { name: 'QA', exact: true });
  await expect(card.getByRole('img', { name: /^CPU of web over the last hour, now \d+\.\d %$/ })).toBeVisible({ timeout: 15_000 });
  await api(page).post(`${base}/suspend`);
});

test('/metrics answers administrators in the Prometheus text format', async ({ page, playwright }) => {
  const created = await api(page).post('/api/v1/tokens', { data: { name: `scrape-${Date.now()}` } });
  expect(created.status()).toBe(201);
  const token = (await created.json()).token;
  const scraped = await page.request.get('/metrics', { headers: { Authorization: `Bearer ${token}` } });
  expect(scraped.status()).toBe(200);
  expect(scraped.headers()['content-type']).toContain('text/plain; version=0.0.4');
  const text = await scraped.text();
  expect(text).toContain('# TYPE pergola_uptime_seconds gauge');
  expect(text).toMatch(/^pergola_live_streams \d+$/m);
  // Anyone else: refused, never a sign-in page.
  const stranger = await playwright.request.newContext({
    baseURL: test.info().project.use.baseURL,
    storageState: { cookies: [], origins: [] },
  });
  const anonymous = await stranger.get('/metrics', { maxRedirects: 0 });
  expect(anonymous.status()).toBe(401);
  await stranger.dispose();
});
