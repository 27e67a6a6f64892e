import { expect, Page, test as base } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** A test whose page must log no console error and throw no exception (hydration included). */
export const test = base.extend<{ consoleErrors: string[] }>({
  consoleErrors: async ({ page }, use) => {
    const errors: string[] = [];
    page.on('console', (msg) => {
      // Chromium logs every refused request (a taken ID answers 409, bad input 422, a missing
      // stage 404, a suspended stage's share link 503); those are the refusals the tests
      // provoke. Anything else is an error.
      const refusal = /^Failed to load resource: the server responded with a status of (404|409|422|503) /;
      if (msg.type() === 'error' && !refusal.test(msg.text())) errors.push(msg.text());
    });
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('dialog', (dialog) => {
      errors.push(`unexpected browser dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
    await use(errors);
    expect(errors, 'console errors').toEqual([]);
  },
});
export { expect };

type RequestOptions = Parameters<Page['request']['post']>[1];

/** `options` with the dashboard's `Origin`, as a browser sends it with a change (a change made
 * with the session cookie and no Origin is refused); a test's own `Origin` wins. */
function fromDashboard(options: RequestOptions = {}): RequestOptions {
  const origin = test.info().project.use.baseURL!;
  return { ...options, headers: { Origin: origin, ...(options?.headers ?? {}) } };
}

/** The REST API with the page's session, changes sent as the dashboard would send them. */
export function api(page: Page) {
  return {
    get: (url: string, options?: RequestOptions) => page.request.get(url, options),
    post: (url: string, options?: RequestOptions) => page.request.post(url, fromDashboard(options)),
    put: (url: string, options?: RequestOptions) => page.request.put(url, fromDashboard(options)),
    patch: (url: string, options?: RequestOptions) => page.request.patch(url, fromDashboard(options)),
    delete: (url: string, options?: RequestOptions) => page.request.delete(url, fromDashboard(options)),
  };
}

/** Navigates and waits until the page is hydrated (event handlers attached). */
export async function open(page: Page, url: string) {
  const response = await page.goto(url);
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  return response;
}

export function unique(prefix: string): string {
  return `${prefix} ${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** Creates a project through the form on `/` and returns its ID (from the URL it lands on). */
export async function createProject(page: Page, name = unique('Project')): Promise<string> {
  await open(page, '/');
  await page.getByLabel('Project name').fill(name);
  await page.getByRole('button', { name: 'Create project' }).click();
  await expect(page.getByRole('heading', { level: 1, name })).toBeVisible();
  const id = new URL(page.url()).pathname.split('/').pop()!;
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  return id;
}

/** Creates a stage through the "+ NEW STAGE" popup on the current project page. */
export async function createStage(
  page: Page,
  name: string,
  opts: { type?: 'dev' | 'qa' | 'prod'; id?: string } = {},
) {
  await page.getByRole('button', { name: '+ NEW STAGE' }).click();
  const dialog = page.getByRole('dialog', { name: 'New stage' });
  await dialog.getByLabel('Name').fill(name);
  if (opts.type) await dialog.getByLabel('Type').selectOption(opts.type);
  if (opts.id) await dialog.getByLabel('Stage ID').fill(opts.id);
  await dialog.getByRole('button', { name: 'Create stage' }).click();
  await expect(dialog).toBeHidden();
  const card = page.getByRole('article', { name, exact: true });
  await expect(card).toBeVisible();
  return card;
}

/** A build's files: a text, or a text and its mode (e.g. 0o755 for a script). */
export type BuildFiles = Record<string, string | { text: string; mode: number }>;

/** `files` packed as a build archive (tar + gzip) in a temp dir of its own: by name, as
 * `pergola create build --dir` packs them, or with `dot` as `tar czf build.tar.gz -C DIR .`
 * packs a directory (every entry `./`-prefixed, the root `./` included). */
export function packBuild(files: BuildFiles, opts: { dot?: boolean } = {}): Buffer {
  const dir = fs.mkdtempSync('/tmp/pergola-e2e-upload-');
  try {
    for (const [name, file] of Object.entries(files)) {
      const { text, mode } = typeof file === 'string' ? { text: file, mode: 0o644 } : file;
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), text, { mode });
    }
    return execFileSync('tar', ['-czf', '-', '-C', dir, ...(opts.dot ? ['.'] : Object.keys(files))]);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
}

/** Uploads a build of `project` made of `files` (with its `pergola.toml`) as `pergola create
 * build --dir` does: the directory packed with tar and gzip, sent as `application/gzip`.
 * Returns the build's number. */
export async function uploadBuild(page: Page, project: string, files: BuildFiles): Promise<number> {
  const response = await api(page).post(`/api/v1/projects/${project}/builds`, {
    data: packBuild(files),
    headers: { 'Content-Type': 'application/gzip' },
  });
  expect(response.status(), await response.text()).toBe(201);
  return (await response.json()).number;
}
