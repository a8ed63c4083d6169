// The provider flow: add a device in the Worker tab, run the command it shows (the server's
// install script, which downloads and checks the real agent binary), start the agent as the
// script says (with simulated hardware), and watch the device get verified; pause and resume it.
const { test, expect } = require('@playwright/test');
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { TEST_WALLET, watchPageErrors, hydrated, signIn, chooseFilter } = require('./helpers');

const root = path.resolve(__dirname, '..', '..');
const AGENT_BIN = process.env.E2E_AGENT_BIN || path.join(root, 'target', 'debug', 'gpu-commons-agent');
const MACHINE = path.join(__dirname, '..', 'fixtures', 'rtx4090.toml');

test('a provider adds a device, runs the shown command, and sees it verified', async ({ page }) => {
  const noErrors = watchPageErrors(page);
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/worker');
  await hydrated(page);
  await signIn(page);
  await expect(page.getByTestId('no-devices')).toBeVisible();

  await page.getByTestId('add-device').click();
  await expect(page).toHaveURL(/\/worker\/devices\/new$/);
  await hydrated(page);
  await page.getByTestId('device-name').fill('e2e-rig');
  await page.getByTestId('device-country').selectOption('DE');
  await page.getByTestId('create-device').click();

  const command = (await page.getByTestId('agent-command').textContent()).trim();
  expect(command).toMatch(/^curl -fsSL http:\/\/127\.0\.0\.1:\d+\/install\.sh \| sh -s -- --token gcr_[0-9a-f]{48}$/);
  const runCommand = (await page.getByTestId('agent-run-command').textContent()).trim();
  expect(runCommand).toMatch(/^gpu-commons-agent --server http:\/\/127\.0\.0\.1:\d+ --token gcr_[0-9a-f]{48}$/);
  await page.getByTestId('copy-command').click();
  await expect(page.getByTestId('copy-command')).toHaveText('Copied');
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(command);

  // Run exactly the shown command (into a scratch folder rather than /usr/local), then start
  // the installed agent as the script says, describing the hardware from a file.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gc-e2e-agent-'));
  const install = spawnSync('sh', ['-c', `${command} --prefix ${dir}/prefix --config-dir ${dir}/etc`], { encoding: 'utf8' });
  const said = install.stdout + install.stderr;
  expect(install.status, said).toBe(0);
  const installed = path.join(dir, 'prefix', 'bin', 'gpu-commons-agent');
  expect(fs.readFileSync(installed).equals(fs.readFileSync(AGENT_BIN)), said).toBe(true);
  const start = said.split('\n').map((l) => l.trim()).find((l) => l.startsWith(`${installed} `));
  expect(start, said).toBeTruthy();
  const [, ...args] = start.split(' ');
  const agent = spawn(installed, [...args, '--simulate', MACHINE]);
  let log = '';
  agent.stdout.on('data', (d) => (log += d));
  agent.stderr.on('data', (d) => (log += d));
  try {
    await page.getByTestId('watch-device').click();
    await expect(page.getByTestId('device-name')).toContainText('e2e-rig');
    await hydrated(page);
    await expect(page.getByTestId('device-status'), log).toHaveText('idle', { timeout: 45_000 });
    await expect(page.getByTestId('device-verified')).toBeVisible();
    await expect(page.getByTestId('device-hardware')).toHaveText('1 × RTX 4090 24GB');
    await expect(page.getByTestId('verifications')).toContainText('passed');
    await expect(page.getByTestId('device-connectivity')).toContainText('MB/s down');

    await page.getByTestId('pause-device').click();
    await expect(page.getByTestId('device-status')).toHaveText('paused');
    await expect(page.getByTestId('action-outcome')).toContainText('paused by its owner');
    await page.getByTestId('resume-device').click();
    await expect(page.getByTestId('device-status')).toHaveText('idle');

    // Charts are drawn on the server; the agent's heartbeats show as uptime.
    await expect(page.getByTestId('uptime-chart').locator('svg')).toBeVisible();
    await expect(page.getByTestId('utilisation-chart').locator('svg')).toBeVisible();
    await expect(page.getByTestId('device-uptime')).not.toHaveText('0.0%', { timeout: 20_000 });

    await page.getByTestId('rename-input').fill('  ');
    await page.getByTestId('rename-device').click();
    await expect(page.getByTestId('action-outcome')).toContainText('give the device a name');
    await page.getByTestId('rename-input').fill('e2e-rig-renamed');
    await page.getByTestId('rename-device').click();
    await expect(page.getByTestId('action-outcome')).toContainText('renamed to e2e-rig-renamed');
    await expect(page.getByTestId('device-name')).toContainText('e2e-rig-renamed');

    await page.goto('/worker');
    await hydrated(page);
    const row = page.getByTestId('device-row').filter({ hasText: 'e2e-rig-renamed' });
    await expect(row).toContainText('verified');
    await expect(row).toContainText('1 × RTX 4090 24GB');
    await expect(row).toContainText(/\d+\.\d%/);
    // Each choice applies at once (the filter form submits itself) and the page has its address.
    await chooseFilter(page, 'filter-status', 'status', 'paused');
    await expect(page.getByTestId('no-matching-devices')).toBeVisible();
    await chooseFilter(page, 'filter-status', 'status', 'idle');
    await chooseFilter(page, 'filter-model', 'model', 'RTX 4090 24GB');
    await expect(row).toBeVisible();
    await expect(page).toHaveURL(/status=idle/);
    await chooseFilter(page, 'filter-model', 'model', 'cpu');
    await expect(page.getByTestId('no-matching-devices')).toBeVisible();
  } finally {
    agent.kill();
  }
  expect(log).toContain('registered as dev-');
  noErrors();
});

test('the wizard refuses a blank name with a specific message', async ({ page }) => {
  await page.addInitScript({ path: TEST_WALLET });
  await page.goto('/worker/devices/new');
  await hydrated(page);
  await signIn(page);
  await page.getByTestId('device-name').fill('   ');
  await page.getByTestId('create-device').click();
  await expect(page.getByTestId('new-device-error')).toContainText('give the device a name');
});
