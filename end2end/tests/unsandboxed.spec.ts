import { expect, open, test } from './helpers';

// Run against a server started with PERGOLA_SANDBOX=off (serve.sh "unsandboxed").
test('without the sandbox every page says so loudly', async ({ page, consoleErrors }) => {
  for (const url of ['/', '/account', '/admin']) {
    await open(page, url);
    const banner = page.getByRole('complementary', { name: 'Sandbox off' });
    await expect(banner).toContainText('PERGOLA_SANDBOX=off');
    await expect(banner).toContainText("any stage can read the server's database and secret key");
  }
  // The admin page still tells how limits are enforced.
  await expect(page.getByRole('region', { name: 'Resource limits' })).toContainText('Enforced here with');
});
