// A renter deposits USDC from the connected wallet: the server builds the transfer, the wallet
// signs it (Wallet Standard signTransaction), the server sends it to the local Solana endpoint
// (the real SPL token program), and the balance is credited once the transfer is confirmed.
const { test, expect } = require('@playwright/test');
const { TEST_WALLET, SOLANA, solanaCall, watchPageErrors, hydrated, signIn } = require('./helpers');

test('a renter deposits USDC from the wallet and is credited once it lands', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/cloud/billing');
  await hydrated(page);
  await signIn(page);
  await expect(page.getByTestId('billing-balance')).toHaveText('$500.00');
  const address = await page.getByTestId('wallet-address').getAttribute('title');
  // The wallet's own SOL for the fee and USDC to deposit, on the local chain.
  await solanaCall(page.request, 'requestAirdrop', [address, 1_000_000_000]);
  expect(await solanaCall(page.request, 'localMintTo', [address, SOLANA.usdcMint, 10_000_000])).toBe(10_000_000);

  // Bad input is refused with the reason before anything reaches the wallet.
  await page.getByTestId('deposit-amount').fill('7,5');
  await page.getByTestId('deposit-submit').click();
  await expect(page.getByTestId('deposit-error')).toContainText("'7,5' is not an amount in dollars");

  await page.getByTestId('deposit-amount').fill('7.5');
  await page.getByTestId('deposit-submit').click();
  await expect(page.getByTestId('deposit-outcome')).toContainText('deposit of $7.50 sent');
  await expect(page.getByTestId('deposit-status').first()).toHaveText('confirmed', { timeout: 20_000 });
  await expect(page.getByTestId('billing-balance')).toHaveText('$507.50');
  await expect(page.getByTestId('movement').first()).toHaveAttribute('data-kind', 'deposit');
  // On chain: 10 minted, 7.5 deposited.
  const balance = await solanaCall(page.request, 'localMintTo', [address, SOLANA.usdcMint, 0]);
  expect(balance).toBe(2_500_000);
  noErrors();
});
