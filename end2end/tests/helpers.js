const path = require('path');
const { expect } = require('@playwright/test');

const TEST_WALLET = path.join(__dirname, '..', 'fixtures', 'test-wallet.js');

/** Fails the test on any uncaught error in the page (a hydration panic shows up here). */
function watchPageErrors(page) {
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  return () => expect(errors, 'uncaught errors in the page').toEqual([]);
}

/** Waits until the WASM bundle has hydrated the page and attached its handlers. */
async function hydrated(page) {
  await expect(page.getByTestId('topbar')).toHaveAttribute('data-hydrated', 'true');
}

function short(address) {
  return `${address.slice(0, 4)}…${address.slice(-4)}`;
}

module.exports = { TEST_WALLET, watchPageErrors, hydrated, short };
