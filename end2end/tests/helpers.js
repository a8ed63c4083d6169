const path = require('path');
const { expect } = require('@playwright/test');

const TEST_WALLET = path.join(__dirname, '..', 'fixtures', 'test-wallet.js');

/**
 * Fails the test on any uncaught error in the page, saying on which page. A hydration panic
 * shows up as "unreachable" (WASM); the framework logs which element did not match just
 * before, so that message is kept too.
 */
function watchPageErrors(page) {
  const errors = [];
  page.on('pageerror', (error) => errors.push(`${error.message} (at ${page.url()})`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /hydration error/i.test(message.text())) {
      errors.push(`${message.text().slice(0, 600)} (at ${page.url()})`);
    }
  });
  return () => expect(errors, 'uncaught errors in the page').toEqual([]);
}

/** Waits until the WASM bundle has hydrated the page's islands and attached their handlers. */
async function hydrated(page) {
  await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
}

/**
 * Signs in with the page's wallet: a new session reloads the page, so this waits for the
 * signed-in page (the address in the top bar) and for its islands to hydrate.
 */
async function signIn(page) {
  // Signing in reloads the page, so every part renders for the session: wait for the new one.
  const reloaded = page.waitForEvent('load');
  await page.getByTestId('connect-wallet').click();
  await reloaded;
  await expect(page.getByTestId('wallet-address')).toBeVisible();
  await hydrated(page);
}

/**
 * Picks `value` in the filter select `testId`: the choice submits its GET form, so this waits for
 * the new page (its address holds `param=value`) and for its islands to hydrate.
 */
async function chooseFilter(page, testId, param, value) {
  await page.getByTestId(testId).selectOption(value);
  await expect(page).toHaveURL(new RegExp(`[?&]${param}=${encodeURIComponent(value).replace(/%20/g, '\\+')}(&|$)`));
  await hydrated(page);
}

/** The local Solana endpoint the e2e server pays to and takes deposits from, and its mints. */
const SOLANA = {
  port: Number(process.env.E2E_SOLANA_PORT || 3918),
  usdcMint: 'CNhiw7naLWn5r7xUoYY6L3XNsK6W6fwW17GAjHKfi2Yv',
  tokenMint: 'EzavvU4p7nThs6nG2tHHTUcs14QvptJKcELF9vfUyjuE',
};

/** One JSON-RPC call to the local Solana endpoint; fails the test on an error answer. */
async function solanaCall(request, method, params) {
  const response = await request.post(`http://127.0.0.1:${SOLANA.port}/`, {
    data: { jsonrpc: '2.0', id: 1, method, params },
  });
  const body = await response.json();
  expect(body.error, `${method}: ${JSON.stringify(body.error)}`).toBeUndefined();
  return body.result;
}

function short(address) {
  return `${address.slice(0, 4)}…${address.slice(-4)}`;
}

module.exports = { TEST_WALLET, SOLANA, solanaCall, watchPageErrors, hydrated, signIn, chooseFilter, short };
