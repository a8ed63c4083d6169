// The renter flow: a provider's real agent makes one RTX 4090 rentable; the renter walks the
// deploy wizard (live quote and fillability), pays from the balance, watches the cluster run
// the command on the device, extends it and terminates it with a refund.
const { test, expect } = require('@playwright/test');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { TEST_WALLET, SOLANA, solanaCall, watchPageErrors, hydrated, signIn, chooseFilter } = require('./helpers');

const root = path.resolve(__dirname, '..', '..');
const AGENT_BIN = process.env.E2E_AGENT_BIN || path.join(root, 'target', 'debug', 'gpu-commons-agent');
const MACHINE = path.join(__dirname, '..', 'fixtures', 'rtx4090.toml');

/** Adds a device through the JSON API (the Worker tab's twin) and starts its real agent. */
async function rentableDevice(page, name) {
  const added = await page.request.post('/api/v1/worker/devices', {
    data: { name, os: 'linux', kind: 'gpu', country: 'DE' },
  });
  expect(added.status(), await added.text()).toBe(201);
  const ticket = await added.json();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gc-e2e-renter-'));
  const [, ...args] = ticket.run_command.split(' ');
  const agent = spawn(AGENT_BIN, [...args, '--credentials', path.join(dir, 'agent.json'), '--simulate', MACHINE]);
  let log = '';
  agent.stdout.on('data', (d) => (log += d));
  agent.stderr.on('data', (d) => (log += d));
  await expect
    .poll(async () => {
      const r = await page.request.get(`/api/v1/worker/devices/${ticket.device_id}`);
      if (r.status() !== 200) return 'not registered';
      const d = await r.json();
      return d.summary.status === 'idle' && d.summary.verified && d.summary.tier ? 'ready' : d.summary.status;
    }, { message: `the device never became rentable:\n${log}`, timeout: 45_000 })
    .toBe('ready');
  return { agent, id: ticket.device_id, log: () => log };
}

test('a renter deploys a cluster on a real agent, extends it and terminates it', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/cloud');
  await hydrated(page);
  await signIn(page);
  // The demo network credits every new account once.
  await expect(page.getByTestId('balance')).toHaveText('$500.00');
  await expect(page.getByTestId('no-clusters')).toBeVisible();

  const device = await rentableDevice(page, 'e2e-rental');
  try {
    await page.getByTestId('deploy-cluster').click();
    await expect(page).toHaveURL(/\/cloud\/deploy$/);
    await hydrated(page);
    await page.getByTestId('deploy-kind').selectOption('bare_metal');
    await page.getByTestId('deploy-name').fill('e2e-cluster');
    await expect(page.getByTestId('name-free')).toBeVisible();
    await page.getByTestId('deploy-hardware').selectOption('RTX 4090 24GB');
    await page.getByTestId('country-search').fill('germ');
    await page.getByTestId('country-DE').check();
    await expect(page.getByTestId('chosen-countries')).toContainText('DE');
    // A web server in the sandbox, on the device's loopback: reached only through the tunnel.
    const command = 'echo tunnelled > /tmp/index.html; echo started; exec busybox httpd -f -p 0.0.0.0:18089 -h /tmp';
    await page.getByTestId('deploy-command').fill(command);
    await page.getByTestId('deploy-port').fill('18089');

    // Asking for more than exists: an honest no, with the reason and what can be placed.
    await page.getByTestId('deploy-quantity').fill('3');
    await expect(page.getByTestId('not-fillable')).toContainText('RTX 4090 24GB');
    await expect(page.getByTestId('alternatives')).toContainText('1');
    // Bad input is named by the same rules the server applies.
    await page.getByTestId('deploy-quantity').fill('0');
    await expect(page.getByTestId('error-quantity')).toContainText('choose 1 to');
    await expect(page.getByTestId('deploy-submit')).toBeDisabled();

    await page.getByTestId('deploy-quantity').fill('1');
    await expect(page.getByTestId('fillable')).toBeVisible();
    await expect(page.getByTestId('quote-rate')).toHaveText('$0.49');
    await expect(page.getByTestId('quote-unit-hours')).toHaveText('1 × 1 h = 1');
    // $0.49 + 0.25% reservation + 2% USDC = $0.501025.
    await expect(page.getByTestId('quote-total')).toHaveText('$0.50');

    await page.getByTestId('deploy-submit').click();
    await expect(page).toHaveURL(/\/cloud\/clusters\/cl-[0-9a-f]+$/);
    await hydrated(page);
    await expect(page.getByTestId('cluster-status'), device.log()).toHaveText('running', { timeout: 20_000 });
    await expect(page.getByTestId('cluster-hardware')).toHaveText('1 × RTX 4090 24GB');
    await expect(page.getByTestId('workload-state')).toHaveText('running');
    await expect(page.getByTestId('cluster-devices')).toContainText(device.id);
    await expect(page.getByTestId('cluster-timeline')).toContainText('paid $0.50');
    await expect(page.getByTestId('cluster-access')).toContainText(`Each device runs: ${command}`);
    // What the command printed, shipped by the agent from its sandbox, follows on the page.
    await expect(page.getByTestId('cluster-output'), device.log()).toContainText('started', { timeout: 15_000 });
    const logs = await (await page.request.get(`${new URL(page.url()).pathname.replace('/cloud/clusters/', '/api/v1/cloud/clusters/')}/logs`)).json();
    expect(logs.lines.map((l) => l.text)).toContain('started');
    // The port, through the platform's tunnel at a host of the device's own (the tunnel URL is
    // a DNS name, localhost, which Chromium resolves with every name under it), where the
    // console's session cookie does not reach.
    const tunnel = await page.getByTestId('cluster-access').getByRole('link', { name: /18089/ }).getAttribute('href');
    expect(new URL(tunnel).hostname).toBe(`${new URL(page.url()).pathname.split('/').pop()}-${device.id}.localhost`);
    const signedIn = await page.context().newPage();
    expect((await signedIn.goto(tunnel)).status()).toBe(401);
    await expect(signedIn.locator('body')).toContainText('access token');
    await signedIn.close();
    // The cluster's access token opens it in any browser, signed in or not: the link leaves it
    // in a cookie for that host and lands on the address without it.
    await page.getByTestId('rotate-access-token').click();
    await expect(page.getByTestId('access-token-value')).toContainText(/^gct_[0-9a-f]{64}$/);
    const withToken = await page.getByTestId('access-link').first().getAttribute('href');
    expect(withToken).toBe(`${tunnel}?gc_access=${await page.getByTestId('access-token-value').textContent()}`);
    const stranger = await page.context().browser().newContext();
    const strangerPage = await stranger.newPage();
    await expect.poll(async () => (await strangerPage.goto(withToken)).status(), { timeout: 15_000 }).toBe(200);
    await expect(strangerPage.locator('body')).toContainText('tunnelled');
    expect(strangerPage.url()).toBe(tunnel);
    await stranger.close();
    await expect(page.getByTestId('cluster-access-note')).toContainText('Access token made');
    // Drawn on the server from the agents' heartbeats.
    await expect(page.getByTestId('cluster-utilisation-chart').locator('svg')).toBeVisible();
    expect(device.log()).toContain('workload running');

    await page.getByTestId('extend-count').fill('2');
    await page.getByTestId('extend-cluster').click();
    await expect(page.getByTestId('cluster-outcome')).toContainText('extended: 3 h paid');
    await expect(page.getByTestId('cluster-hours')).toHaveText('3');

    await page.getByTestId('terminate-cluster').click();
    await expect(page.getByTestId('cluster-status')).toHaveText('terminated');
    await expect(page.getByTestId('cluster-timeline')).toContainText('returned to the balance');
    await expect(page.getByTestId('terminate-cluster')).toHaveCount(0);
    await expect
      .poll(async () => (await (await page.request.get(`/api/v1/worker/devices/${device.id}`)).json()).summary.status)
      .toBe('idle');

    await page.goto('/cloud');
    await hydrated(page);
    const row = page.getByTestId('cluster-row').filter({ hasText: 'e2e-cluster' });
    await expect(row).toContainText('terminated');
    const balance = await page.getByTestId('balance').textContent();
    // Paid $0.50 + $1.00 for the extension; most of it came back.
    expect(Number(balance.replace('$', ''))).toBeGreaterThan(498.5);
    expect(Number(balance.replace('$', ''))).toBeLessThan(500);
    await chooseFilter(page, 'cluster-status-filter', 'status', 'running');
    await expect(page.getByTestId('no-clusters')).toBeVisible();

    // Billing: the refund, the two charges and the welcome credit, newest first, and a CSV.
    await page.getByTestId('billing-link').click();
    await expect(page).toHaveURL(/\/cloud\/billing$/);
    await expect(page.getByTestId('movement')).toHaveCount(4);
    await expect(page.getByTestId('movement').first()).toHaveAttribute('data-kind', 'refund');
    await expect(page.getByTestId('billing-balance')).toHaveText(balance);
    const csv = await (await page.request.get('/api/v1/cloud/billing.csv')).text();
    expect(csv.split('\r\n').filter(Boolean)).toHaveLength(5);

    // The same wallet runs the device: its earnings show the hire, settled at termination.
    await page.goto('/worker');
    await hydrated(page);
    await page.getByTestId('earnings-link').click();
    await expect(page).toHaveURL(/\/worker\/earnings$/);
    await hydrated(page);
    await expect(page.getByTestId('hire-row')).toContainText('e2e-rental');
    // Its agent never went down while hired: nothing forfeited.
    await expect(page.getByTestId('hired-forfeited')).toHaveText('$0.00');
    await expect(page.getByTestId('hired-earned')).toHaveText(/^\$0\.\d\d$/);
    await expect(page.getByTestId('hire-chart').locator('svg')).toBeVisible();
    await expect(page.getByTestId('movement')).toHaveCount(1);
    await page.getByTestId('payments-search').fill('no such payment');
    await page.getByTestId('payments-search').press('Enter');
    await expect(page.getByTestId('no-movements')).toBeVisible();
    await page.getByTestId('payments-search').fill('terminated');
    await page.getByTestId('payments-search').press('Enter');
    await expect(page.getByTestId('movement')).toHaveCount(1);
    await expect(page.getByTestId('movement')).toHaveAttribute('data-kind', 'earning');
    // This server pays out to a local Solana endpoint (litesvm, the real SPL token program),
    // and its operator set the smallest transfer to one micro-dollar, so the few seconds of
    // hire can be claimed. More than is claimable is refused with the figures.
    await expect(page.getByTestId('payouts-off')).toHaveCount(0);
    // The search loaded a new page: its claim form must be live before it is typed into.
    await hydrated(page);
    await page.getByTestId('claim-amount').fill('5');
    await page.getByTestId('claim-submit').click();
    await expect(page.getByTestId('claim-error')).toContainText('you can claim up to $0.00; $5.00 was asked');
    await expect(page.getByTestId('payouts')).toHaveCount(0);
    await page.getByTestId('claim-all').click();
    const claimed = await page.getByTestId('claim-amount').inputValue();
    expect(claimed).toMatch(/^0\.\d{6}$/);
    await page.getByTestId('claim-submit').click();
    await expect(page.getByTestId('claim-outcome')).toBeVisible();
    // The page re-reads itself while the payout is on its way.
    await expect(page.getByTestId('payout-status').first()).toHaveText('confirmed', { timeout: 30_000 });
    await expect(page.getByTestId('payout-link')).toHaveAttribute('href', /^https:\/\/explorer\.solana\.com\/tx\/\w+/);
    await expect(page.getByTestId('claimable-usdc')).toHaveText('$0.00');
    // On chain, the wallet holds exactly what was claimed.
    const wallet = await page.getByTestId('wallet-address').getAttribute('title');
    expect(await solanaCall(page.request, 'localMintTo', [wallet, SOLANA.usdcMint, 0])).toBe(Math.round(Number(claimed) * 1e6));
    // The device's page lists the cluster it served and what it earned there.
    await page.getByTestId('hire-row').getByRole('link').click();
    await expect(page).toHaveURL(new RegExp(`/worker/devices/${device.id}$`));
    await expect(page.getByTestId('clusters-served')).toContainText('cl-');
  } finally {
    device.agent.kill();
  }
  noErrors();
});

test('a renter deposits GCT from the wallet and pays for a cluster in it', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/cloud/billing');
  await hydrated(page);
  await signIn(page);
  const address = await page.getByTestId('wallet-address').getAttribute('title');
  await solanaCall(page.request, 'requestAirdrop', [address, 1_000_000_000]);
  await solanaCall(page.request, 'localMintTo', [address, SOLANA.tokenMint, 10_000_000]);
  await page.getByTestId('deposit-asset').selectOption('token');
  await page.getByTestId('deposit-amount').fill('4');
  await page.getByTestId('deposit-submit').click();
  await expect(page.getByTestId('deposit-outcome')).toContainText('deposit of 4 GCT sent');
  await expect(page.getByTestId('billing-tokens')).toHaveText('4 GCT', { timeout: 20_000 });

  const device = await rentableDevice(page, 'e2e-gct-rental');
  try {
    // Only this device is free (an earlier test's agent has stopped and been marked down).
    await expect
      .poll(async () => {
        const options = await (await page.request.get('/api/v1/cloud/options?hardware=RTX%204090%2024GB')).json();
        return options.hardware.find((o) => o.hardware === 'RTX 4090 24GB').free_units;
      }, { timeout: 20_000 })
      .toBe(1);
    await page.goto('/cloud/deploy');
    await hydrated(page);
    await page.getByTestId('deploy-kind').selectOption('bare_metal');
    await page.getByTestId('deploy-name').fill('paid-in-gct');
    await page.getByTestId('deploy-hardware').selectOption('RTX 4090 24GB');
    const gct = page.getByTestId('deploy-payment').locator('option[value=token]');
    await expect(gct).toBeEnabled();
    await expect(gct).toHaveText('GCT token balance at $0.50 per GCT (no fee)');
    await page.getByTestId('deploy-payment').selectOption('token');
    // $0.49 + 0.25% reservation and no payment fee: $0.491225, at $0.50 per GCT.
    await expect(page.getByTestId('quote-total-tokens')).toHaveText('0.98245 GCT');
    await page.getByTestId('deploy-submit').click();
    await expect(page).toHaveURL(/\/cloud\/clusters\/cl-[0-9a-f]+$/);
    await hydrated(page);
    await expect(page.getByTestId('cluster-status'), device.log()).toHaveText('running', { timeout: 20_000 });
    await expect(page.getByTestId('cluster-rate')).toContainText('paid in GCT at $0.50 per GCT');
    await expect(page.getByTestId('cluster-timeline')).toContainText('paid 0.98245 GCT ($0.49 at $0.50 per GCT)');
    await page.getByTestId('terminate-cluster').click();
    await expect(page.getByTestId('cluster-status')).toHaveText('terminated');

    // The unused time comes back in GCT (the reservation fee and a few seconds stay paid);
    // the dollar balance was never touched.
    await page.goto('/cloud/billing');
    await expect(page.getByTestId('billing-balance')).toHaveText('$500.00');
    await expect(page.getByTestId('billing-tokens')).toHaveText(/^3\.99\d* GCT$/);
    const [refund, charge] = [page.getByTestId('movement').nth(0), page.getByTestId('movement').nth(1)];
    await expect(refund).toHaveAttribute('data-kind', 'refund');
    await expect(refund).toContainText('GCT');
    await expect(charge).toHaveAttribute('data-kind', 'charge');
    await expect(charge).toContainText('-0.98245 GCT');
  } finally {
    device.agent.kill();
  }
  noErrors();
});

test('on a fresh demo network a renter rents the demo agents, and attested orders are told why not', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/cloud/deploy');
  await hydrated(page);
  await signIn(page);
  await page.getByTestId('deploy-kind').selectOption('bare_metal');
  await page.getByTestId('deploy-name').fill('on-the-demo');
  await page.getByTestId('deploy-hardware').selectOption('H100 80GB SXM');
  await page.getByTestId('deploy-quantity').fill('8');
  await page.getByTestId('deploy-command').fill('sleep 300');
  // The server's demo agents register and pass verification on their own.
  await expect(page.getByTestId('fillable')).toBeVisible({ timeout: 60_000 });
  // No facility is attested for HIPAA here: an honest no, and what the order finds without it.
  await page.getByTestId('deploy-compliance').selectOption('hipaa');
  await expect(page.getByTestId('not-fillable')).toContainText('0 HIPAA-attested H100 80GB SXM GPUs');
  await expect(page.getByTestId('not-fillable')).toContainText('without HIPAA attestation it can be placed now');
  await page.getByTestId('deploy-compliance').selectOption('e2e_encrypted');
  await expect(page.getByTestId('fillable')).toBeVisible();
  await page.getByTestId('deploy-submit').click();
  await expect(page).toHaveURL(/\/cloud\/clusters\/cl-[0-9a-f]+$/);
  await hydrated(page);
  await expect(page.getByTestId('cluster-status')).toHaveText('running', { timeout: 20_000 });
  await expect(page.getByTestId('cluster-hardware')).toHaveText('8 × H100 80GB SXM');
  await page.getByTestId('terminate-cluster').click();
  await expect(page.getByTestId('cluster-status')).toHaveText('terminated');
  noErrors();
});

test('the wizard says honestly when nothing can be placed', async ({ page }) => {
  await page.goto('/cloud/deploy');
  await hydrated(page);
  await page.getByTestId('deploy-name').fill('big-train');
  await page.getByTestId('deploy-hardware').selectOption('H100 80GB SXM');
  await page.getByTestId('deploy-quantity').fill('64');
  await expect(page.getByTestId('not-fillable')).toContainText('H100 80GB SXM');
  await expect(page.getByTestId('quote-total')).toBeVisible();
});

test('a renter makes an API key, a script uses it, and revoking it locks the script out', async ({ page, baseURL }) => {
  const noErrors = watchPageErrors(page);
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/cloud');
  await hydrated(page);
  await signIn(page);
  await page.getByTestId('api-key-name').fill('nightly training');
  await page.getByTestId('create-api-key').click();
  const secret = (await page.getByTestId('api-key-secret').textContent()).trim();
  expect(secret).toMatch(/^gck_[0-9a-f]{64}$/);
  const row = page.getByTestId('api-key-row').filter({ hasText: 'nightly training' });
  await expect(row).toContainText('works until');

  // A script: no cookie, only the key.
  const asScript = () => fetch(`${baseURL}/api/v1/cloud/balance`, { headers: { Authorization: `Bearer ${secret}` } });
  const allowed = await asScript();
  expect(allowed.status).toBe(200);
  expect((await allowed.json()).available).toBeGreaterThan(0);

  await row.getByTestId('revoke-api-key').click();
  await expect(row).toContainText('revoked');
  expect((await asScript()).status).toBe(401);

  await page.getByTestId('api-key-name').fill('   ');
  await page.getByTestId('create-api-key').click();
  await expect(page.getByTestId('api-key-error')).toContainText('give the key a name');
  noErrors();
});

test('a page of another origin on the same host cannot act as the signed-in renter', async ({ page, baseURL, context }) => {
  const noErrors = watchPageErrors(page);
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/cloud');
  await hydrated(page);
  await signIn(page);
  await page.getByTestId('api-key-name').fill('kept safe');
  await page.getByTestId('create-api-key').click();
  await expect(page.getByTestId('api-key-row').filter({ hasText: 'kept safe' })).toContainText('works until');
  const keys = await (await page.request.get('/api/v1/keys')).json();
  const id = keys.find((k) => k.name === 'kept safe').id;

  // The tunnel origin: the same host on another port, where providers' pages are served. The
  // renter's SameSite=Lax session cookie still goes with its requests to the console.
  const tunnels = baseURL.replace(/:(\d+)$/, (_, port) => `:${Number(port) + 10}`);
  const foreign = await context.newPage();
  await foreign.goto(`${tunnels}/`);
  await foreign.evaluate(async ({ console, id }) => {
    // Simple requests (no preflight), as a hostile page would send them; their answers are
    // opaque to it, so only the server's state tells whether they worked.
    const post = (path) => fetch(`${console}${path}`, { method: 'POST', mode: 'no-cors', credentials: 'include' });
    await post(`/api/v1/keys/${id}/revoke`);
    await post('/api/v1/auth/sign-out');
  }, { console: baseURL, id });

  // Neither took effect: the key still works and the renter is still signed in.
  const after = await (await page.request.get('/api/v1/keys')).json();
  expect(after.find((k) => k.id === id).revoked_at).toBeNull();
  expect((await page.request.get('/api/v1/auth/session')).status()).toBe(200);
  // The console's own page still can.
  await page.getByTestId('api-key-row').filter({ hasText: 'kept safe' }).getByTestId('revoke-api-key').click();
  await expect(page.getByTestId('api-key-row').filter({ hasText: 'kept safe' })).toContainText('revoked');
  noErrors();
});
