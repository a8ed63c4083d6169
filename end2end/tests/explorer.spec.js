// The public explorer: the device list's filters and pages, a device page, and search, with
// the hydrated app and with JavaScript turned off.
const { test, expect } = require('@playwright/test');
const { watchPageErrors, hydrated } = require('./helpers');

/** The ids of the device rows shown. */
async function shownIds(page) {
  return page.getByTestId('device-row').locator('td:first-child a').allTextContents();
}

/**
 * The page shown and the JSON API agree on the same query: both are read again (the page
 * reloaded) until they were read while the fleet held still, since the other tests' agents
 * change devices meanwhile.
 */
async function expectSameAsApi(page, request, query) {
  await expect(async () => {
    await page.reload();
    const api = await (await request.get(`/api/v1/explorer/devices?${query}`)).json();
    expect(await shownIds(page)).toEqual(api.rows.map((d) => d.id));
    await expect(page.getByTestId('devices-matching')).toHaveText(`${api.matching} devices match.`, { timeout: 1_000 });
  }).toPass({ timeout: 20_000 });
}

test('a visitor filters the device list, pages to the end and back, and opens a device', async ({ page, request }) => {
  const noErrors = watchPageErrors(page);
  const idle = await (await request.get('/api/v1/explorer/devices?status=idle')).json();
  expect(idle.matching).toBeGreaterThan(100);

  await page.goto('/explorer');
  await hydrated(page);
  await page.getByTestId('explorer-devices-link').click();
  await expect(page).toHaveURL(/\/explorer\/devices$/);
  await expect(page.getByTestId('device-row')).toHaveCount(50);

  await page.getByTestId('filter-status').selectOption('idle');
  await page.getByTestId('apply-filters').click();
  await expect(page).toHaveURL(/status=idle/);
  await expect(page.getByTestId('filter-status')).toHaveValue('idle');
  await expectSameAsApi(page, request, 'status=idle');
  await expect(page.getByTestId('page-previous')).toHaveCount(0);
  await hydrated(page);
  const firstPage = await shownIds(page);

  // Pages may render in the browser after hydration: wait for the new rows before reading.
  await page.getByTestId('page-next').click();
  await expect(page).toHaveURL(/status=idle&after=/);
  await expect(page.getByTestId('page-previous')).toBeVisible();
  await expect(page.getByTestId('device-row').first()).not.toContainText(firstPage[0]);
  const secondPage = await shownIds(page);
  expect(secondPage[0] > firstPage[49]).toBe(true);

  await page.getByTestId('page-last').click();
  await expect(page).toHaveURL(/last=1/);
  await expect(page.getByTestId('page-next')).toHaveCount(0);
  await expectSameAsApi(page, request, 'status=idle&last=true');

  await hydrated(page);
  await page.getByTestId('page-previous').click();
  await expect(page).toHaveURL(/before=/);
  const before = new URL(page.url()).searchParams.get('before');
  await expectSameAsApi(page, request, `status=idle&before=${before}`);
  expect((await shownIds(page)).every((id) => id < before)).toBe(true);

  await hydrated(page);
  const id = (await shownIds(page))[0];
  await page.getByRole('link', { name: id, exact: true }).click();
  await expect(page).toHaveURL(new RegExp(`/explorer/devices/${id}$`));
  await expect(page.getByTestId('public-device-id')).toContainText(id);
  await expect(page.getByTestId('public-device-status')).toBeVisible();
  await expect(page.locator('.chart svg')).toBeVisible();
  noErrors();
});

test('search goes straight to a device and suggests pages for anything else', async ({ page, request }) => {
  const noErrors = watchPageErrors(page);
  const list = await (await request.get('/api/v1/explorer/devices')).json();
  const id = list.rows[3].id;
  const inGermany = await (await request.get('/api/v1/explorer/devices?country=DE')).json();

  await page.goto('/explorer/blocks');
  await hydrated(page);
  await page.getByTestId('explorer-search').fill(id);
  await page.getByTestId('explorer-search-go').click();
  await expect(page).toHaveURL(new RegExp(`/explorer/devices/${id}$`));
  await expect(page.getByTestId('public-device-id')).toContainText(id);

  await page.getByTestId('explorer-search').fill('germany');
  await page.getByTestId('explorer-search').press('Enter');
  await expect(page.getByTestId('search-nothing')).toContainText('Nothing found');
  await page.getByRole('link', { name: 'Devices in Germany' }).click();
  await expect(page).toHaveURL(/\/explorer\/devices\?country=DE$/);
  await expect(page.getByTestId('devices-matching')).toHaveText(`${inGermany.matching} devices match.`);
  const countries = await page.getByTestId('device-row').locator('td:nth-child(3)').allTextContents();
  expect(countries.length).toBeGreaterThan(0);
  expect(new Set(countries)).toEqual(new Set(['DE']));
  noErrors();
});

test('the explorer works with JavaScript turned off', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto('/explorer/devices?status=idle');
  await expect(page.getByTestId('device-row')).toHaveCount(50);
  const first = await shownIds(page);
  await page.getByTestId('page-next').click();
  await expect(page).toHaveURL(/after=/);
  expect((await shownIds(page))[0] > first[49]).toBe(true);

  await page.getByTestId('filter-tier').selectOption('ultra');
  await page.getByTestId('apply-filters').click();
  await expect(page).toHaveURL(/tier=ultra/);
  const tiers = await page.getByTestId('device-row').locator('td:nth-child(4)').allTextContents();
  expect(new Set(tiers)).toEqual(new Set(['ultra']));

  await page.getByTestId('explorer-search').fill(first[0]);
  await page.getByTestId('explorer-search').press('Enter');
  await expect(page).toHaveURL(new RegExp(`/explorer/devices/${first[0]}$`));
  await expect(page.getByTestId('public-device-hardware')).not.toBeEmpty();
  await context.close();
});
