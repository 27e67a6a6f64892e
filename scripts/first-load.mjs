// What a browser downloads on a first visit (empty cache), as Chromium reports it: each
// response's transferred body size (compressed as sent). Used by scripts/bench-assets.sh.
//   node scripts/first-load.mjs BASE_URL [PATH...]
import { chromium } from '../node_modules/playwright/index.mjs';

const [base, ...paths] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});
for (const path of paths.length ? paths : ['/login']) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = [];
  page.on('requestfinished', async (request) => {
    const sizes = await request.sizes();
    const response = await request.response();
    const encoding = (await response?.headerValue('content-encoding')) ?? '';
    seen.push({ url: request.url().replace(base, ''), bytes: sizes.responseBodySize, encoding });
  });
  await page.goto(base + path);
  await page.waitForSelector('body[data-hydrated="true"]', { timeout: 30000 });
  await page.waitForLoadState('networkidle');
  let total = 0;
  for (const r of seen.filter((r) => !r.url.startsWith('/api/'))) {
    total += r.bytes;
    console.log(`  ${r.url.padEnd(70)} ${String(r.bytes).padStart(8)} bytes ${r.encoding}`);
  }
  console.log(`${path}: first load ${total} bytes (${Math.round(total / 1024)} KB) in ${seen.length} requests`);
  await context.close();
}
await browser.close();
