// Largest Contentful Paint of explorer pages in headless Chromium on loopback, as the explorer
// issue asks (≤ 1 s). Usage: node bench/lcp.js http://127.0.0.1:3000 [runs]
// Each run is a fresh browser context (nothing cached); prints every run and the worst.
const { chromium } = require('@playwright/test');

const PAGES = ['/explorer', '/explorer/devices?last=1', '/explorer/blocks'];

async function lcpOf(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(url, { waitUntil: 'load' });
  const lcp = await page.evaluate(
    () =>
      new Promise((resolve) => {
        new PerformanceObserver((list) => {
          const entries = list.getEntries();
          resolve(entries[entries.length - 1].startTime);
        }).observe({ type: 'largest-contentful-paint', buffered: true });
      }),
  );
  await context.close();
  return lcp;
}

(async () => {
  const base = process.argv[2] || 'http://127.0.0.1:3000';
  const runs = Number(process.argv[3] || 5);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  for (const path of PAGES) {
    const times = [];
    for (let i = 0; i < runs; i += 1) times.push(await lcpOf(browser, base + path));
    console.log(`${path}: LCP ${times.map((t) => t.toFixed(0)).join(', ')} ms; worst ${Math.max(...times).toFixed(0)} ms`);
  }
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
