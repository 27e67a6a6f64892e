import { request } from '@playwright/test';

/** The administrator the SQLite, PostgreSQL and unsandboxed test servers create at start-up (serve.sh). */
export const ADMIN = { username: 'admin', password: 'e2e-admin-password' };

/** Signs in on each test server through the sign-in form's endpoint and keeps the session cookie. */
export default async function globalSetup() {
  for (const [name, port] of [
    ['sqlite', 3301],
    ['postgres', 3302],
    ['unsandboxed', 3304],
  ] as const) {
    const baseURL = `http://127.0.0.1:${port}`;
    const context = await request.newContext({ baseURL, extraHTTPHeaders: { Origin: baseURL } });
    const response = await context.post('/login', { form: { ...ADMIN, next: '/' }, maxRedirects: 0 });
    if (response.status() !== 303 || !(response.headers()['set-cookie'] ?? '').includes('pergola_session=')) {
      throw new Error(`signing in on ${baseURL} failed: ${response.status()} ${response.headers()['location']}`);
    }
    await context.storageState({ path: `.auth/${name}.json` });
    await context.dispose();
  }
}
