// Browser tests against the real server binary on loopback, in Debian's Chromium (Playwright's
// own browser downloads are not available here, and never needed).
const { defineConfig } = require('@playwright/test');
const { SOLANA } = require('./tests/helpers');
const path = require('path');
const os = require('os');
const fs = require('fs');

const port = Number(process.env.E2E_PORT || 3917);
// Renters' tunnels: an origin of their own, clear of the local Solana endpoint's port.
const tunnelPort = port + 10;
const root = path.resolve(__dirname, '..');
const server = process.env.E2E_SERVER_BIN || path.join(root, 'target', 'debug', 'gpu-commons');
const localSolana = process.env.E2E_SOLANA_BIN || path.join(root, 'target', 'debug', 'local-solana');
// The demo network's own agents (real agent processes with simulated GPUs) run this binary.
const agent = process.env.E2E_AGENT_BIN || path.join(root, 'target', 'debug', 'gpu-commons-agent');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'gc-e2e-'));
const database = path.join(scratch, 'e2e.db');
// Payouts land on a local Solana endpoint (litesvm running the real SPL token program) with
// these two mints; local-solana makes the treasury key file the server then reads.
const solanaPort = SOLANA.port;
const treasuryKey = path.join(scratch, 'treasury.json');
const mints = `--usdc-mint ${SOLANA.usdcMint} --token-mint ${SOLANA.tokenMint}`;

module.exports = defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: 'off',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
  },
  webServer: [
    {
      command: `"${localSolana}" --listen 127.0.0.1:${solanaPort} --treasury-key "${treasuryKey}" ${mints}`,
      url: `http://127.0.0.1:${solanaPort}/health`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'pipe',
      stderr: 'pipe',
    },
    {
      // Waits for local-solana's key file in case both start at once.
      command: `sh -c 'while [ ! -s "${treasuryKey}" ]; do sleep 0.1; done; exec "${server}" --listen 127.0.0.1:${port} --tunnel-listen 127.0.0.1:${tunnelPort} --tunnel-url http://localhost:${tunnelPort} --database-url sqlite://${database} --demo --demo-devices 200 --agent-binary "${agent}" --demo-agents-dir "${path.join(scratch, 'demo-agents')}" --heartbeat-interval-secs 1 --down-after-secs 5 --speed-test-bytes 4194304 --min-transfer-usd 0.000001 --solana-rpc-url http://127.0.0.1:${solanaPort}/ --treasury-key "${treasuryKey}" ${mints} --site-root "${path.join(root, 'target', 'site')}" --log warn'`,
      url: `http://127.0.0.1:${port}/readyz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'pipe',
      stderr: 'pipe',
    },
  ],
});
