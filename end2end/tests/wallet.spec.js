// Sign-In With Solana through a Wallet-Standard wallet in a real browser.
const { test, expect } = require('@playwright/test');
const { TEST_WALLET, watchPageErrors, hydrated, short } = require('./helpers');

test('a Wallet-Standard wallet signs in, the session survives a reload, and sign-out ends it', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/worker');
  await hydrated(page);

  // Read before connecting: signing in reloads the page (every part renders for the session).
  const address = await page.evaluate(() => window.__testWallet.address);
  const reloaded = page.waitForEvent('load');
  await page.getByTestId('connect-wallet').click();
  await reloaded;
  await expect(page.getByTestId('wallet-address')).toHaveText(short(address));
  await expect(page.getByTestId('no-devices')).toBeVisible();
  await hydrated(page);

  // The test wallet keeps what it signed across the reload (sessionStorage).
  const signed = await page.evaluate(() => window.__testWallet.signed);
  expect(signed).toHaveLength(1);
  expect(signed[0]).toContain(`127.0.0.1:${new URL(page.url()).port} wants you to sign in with your Solana account:\n${address}`);
  expect(signed[0]).toMatch(/\nNonce: [0-9a-f]{32}\n/);
  // The wallet offers `solana:signIn`, so it wrote the message from the fields itself (after
  // checking the domain against the page).
  expect(await page.evaluate(() => window.__testWallet.via)).toEqual(['solana:signIn']);

  // The server renders the signed-in header from the HttpOnly cookie.
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'gc_session');
  expect(session.httpOnly).toBe(true);
  expect(session.sameSite).toBe('Lax');
  await page.reload();
  await expect(page.getByTestId('wallet-address')).toHaveText(short(address));
  expect((await page.request.get('/api/v1/auth/session')).status()).toBe(200);

  await hydrated(page);
  await page.getByTestId('sign-out').click();
  await expect(page.getByTestId('connect-wallet')).toBeVisible();
  await expect(page.getByTestId('worker-sign-in')).toBeVisible();
  expect((await page.request.get('/api/v1/auth/session')).status()).toBe(401);
  noErrors();
});

test('a wallet without solana:signIn signs the message instead', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.addInitScript({ path: TEST_WALLET });
  await page.addInitScript(() => {
    window.__testWallet.noSignIn = true;
  });
  await page.goto('/cloud');
  await hydrated(page);
  const address = await page.evaluate(() => window.__testWallet.address);
  const reloaded = page.waitForEvent('load');
  await page.getByTestId('connect-wallet').click();
  await reloaded;
  await expect(page.getByTestId('wallet-address')).toHaveText(short(address));
  expect(await page.evaluate(() => window.__testWallet.via)).toEqual(['solana:signMessage']);
  noErrors();
});

test('a tampered signature is refused with a clear message and no session', async ({ page }) => {
  await page.addInitScript({ path: TEST_WALLET });
  await page.addInitScript(() => {
    window.__testWallet.tamper = true;
  });
  await page.goto('/cloud');
  await hydrated(page);
  const refused = page.waitForResponse((r) => r.request().method() === 'POST' && /\/api\/sign_in[^_/]*$/.test(new URL(r.url()).pathname));
  await page.getByTestId('connect-wallet').click();
  expect((await refused).status()).toBe(401);
  await expect(page.getByTestId('wallet-error')).toContainText('the signature does not match the message and wallet address');
  await expect(page.getByTestId('wallet-address')).toHaveCount(0);
  expect((await page.request.get('/api/v1/auth/session')).status()).toBe(401);
});

test('without a wallet the button says what to install', async ({ page }) => {
  await page.goto('/explorer');
  await hydrated(page);
  await page.getByTestId('connect-wallet').click();
  await expect(page.getByTestId('wallet-error')).toContainText('No Solana wallet found');
});
