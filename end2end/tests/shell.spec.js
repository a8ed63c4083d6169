// The app shell: server-rendered sections, navigation, hydration, 404.
const { test, expect } = require('@playwright/test');
const { watchPageErrors, hydrated } = require('./helpers');

test('the three sections render on the server and the nav moves between them', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.goto('/');
  await expect(page).toHaveURL(/\/explorer$/);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Network explorer');
  await expect(page.getByTestId('network-totals')).toContainText('GPUs in the network');
  await expect(page.getByTestId('supply-by-model').locator('tbody tr').first()).toBeVisible();
  await hydrated(page);

  await page.getByRole('link', { name: 'Cloud', exact: true }).click();
  await expect(page).toHaveURL(/\/cloud$/);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Cloud');
  await expect(page.getByRole('link', { name: 'Cloud', exact: true })).toHaveAttribute('aria-current', 'page');

  await page.getByRole('link', { name: 'Worker', exact: true }).click();
  await expect(page).toHaveURL(/\/worker$/);
  await expect(page.getByTestId('worker-sign-in')).toBeVisible();
  noErrors();
});

test('the phone-width menu opens only once hydration has attached its handler', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto('/explorer');
  await hydrated(page);
  const toggle = page.getByTestId('nav-toggle');
  await expect(toggle).toBeVisible();
  await expect(page.getByTestId('primary-nav')).toBeHidden();
  await toggle.click();
  await expect(toggle).toHaveAttribute('aria-expanded', 'true');
  await expect(page.getByTestId('primary-nav')).toBeVisible();
  await toggle.click();
  await expect(page.getByTestId('primary-nav')).toBeHidden();
  noErrors();
});

test('an unknown address shows the 404 page with status 404', async ({ page }) => {
  const response = await page.goto('/this/does/not/exist');
  expect(response.status()).toBe(404);
  await expect(page.getByTestId('not-found')).toContainText('This page does not exist');
});

test('health and readiness endpoints answer', async ({ request }) => {
  expect((await request.get('/healthz')).status()).toBe(200);
  expect(await (await request.get('/readyz')).text()).toBe('ready');
});
