import { defineConfig } from '@playwright/test';

// Every test runs twice: against a server on SQLite and one on PostgreSQL. The tests in
// defaults.spec.ts run once, against a server started as `scripts/start.sh` starts it; those in
// unsandboxed.spec.ts once, against a server with PERGOLA_SANDBOX=off.
const backends = [
  { name: 'sqlite', port: 3301 },
  { name: 'postgres', port: 3302 },
  { name: 'defaults', port: 3303 },
  { name: 'unsandboxed', port: 3304 },
];
/** The tests of the servers that run only their own file. */
const own: Record<string, RegExp> = { defaults: /defaults\.spec\.ts$/, unsandboxed: /unsandboxed\.spec\.ts$/ };
const special = /(defaults|unsandboxed)\.spec\.ts$/;

export default defineConfig({
  testDir: './tests',
  // Signs the administrator in on the SQLite and PostgreSQL servers (storage states in .auth/).
  globalSetup: './global-setup.ts',
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: 'list',
  use: {
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
    screenshot: 'only-on-failure',
  },
  projects: backends.map(({ name, port }) => ({
    name,
    use: {
      baseURL: `http://127.0.0.1:${port}`,
      // Every test starts signed in as the administrator, but on the server started as
      // start.sh starts it, whose first visit sets the instance up.
      ...(name === 'defaults' ? {} : { storageState: `.auth/${name}.json` }),
    },
    ...(own[name] ? { testMatch: own[name] } : { testIgnore: special }),
  })),
  webServer: backends.map(({ name, port }) => ({
    command: `bash serve.sh ${name} ${port}`,
    url: `http://127.0.0.1:${port}/healthz`,
    reuseExistingServer: false,
    timeout: 120_000,
    stdout: 'ignore',
    stderr: 'pipe',
  })),
});
