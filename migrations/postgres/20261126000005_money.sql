-- Money, second step: the ledger counts two assets (USDC and the network token) and records
-- each movement as transfers, each debiting one account and crediting another by the same
-- positive amount, so no recorded transaction can be unbalanced; transfers are append-only.
-- Hire earnings settle hourly (cluster_devices.earned/settled_at); hourly reward blocks and
-- each device's line in them are kept for the Worker tab and the explorer.
-- Keep in step with ../sqlite.

CREATE TABLE ledger_transfers (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  BIGINT  NOT NULL REFERENCES ledger_transactions (id),
    asset           TEXT    NOT NULL CHECK (asset IN ('usdc', 'token')),
    debit           TEXT    NOT NULL,
    credit          TEXT    NOT NULL,
    amount          BIGINT  NOT NULL CHECK (amount > 0),
    CHECK (debit <> credit)
);

-- The first step stored each transaction's net change per account. Laid end to end, a
-- transaction's debits and its credits cover the same range; each overlap of a debit's part
-- with a credit's part is one transfer, so every balance stays exactly what it was.
WITH
  debits AS (
    SELECT transaction_id, account, -amount AS amount,
           CAST(SUM(-amount) OVER (PARTITION BY transaction_id ORDER BY account) AS BIGINT) AS upto
    FROM ledger_entries WHERE amount < 0),
  credits AS (
    SELECT transaction_id, account, amount,
           CAST(SUM(amount) OVER (PARTITION BY transaction_id ORDER BY account) AS BIGINT) AS upto
    FROM ledger_entries WHERE amount > 0)
INSERT INTO ledger_transfers (transaction_id, asset, debit, credit, amount)
SELECT d.transaction_id, 'usdc', d.account, c.account,
       LEAST(d.upto, c.upto) - GREATEST(d.upto - d.amount, c.upto - c.amount)
FROM debits d JOIN credits c ON c.transaction_id = d.transaction_id
WHERE LEAST(d.upto, c.upto) > GREATEST(d.upto - d.amount, c.upto - c.amount)
ORDER BY d.transaction_id, d.account, c.account;

DROP TABLE ledger_entries;

CREATE INDEX ledger_transfers_transaction ON ledger_transfers (transaction_id);
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit, transaction_id);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit, transaction_id);

-- Balances per account and asset, kept with the transfers in the same transaction. Only the
-- outside world (external:*) may go below zero.
CREATE TABLE ledger_balances (
    account  TEXT    NOT NULL,
    asset    TEXT    NOT NULL CHECK (asset IN ('usdc', 'token')),
    balance  BIGINT  NOT NULL CHECK (balance >= 0 OR account LIKE 'external:%'),
    PRIMARY KEY (account, asset)
);
INSERT INTO ledger_balances (account, asset, balance)
SELECT account, 'usdc', balance FROM account_balances;
DROP TABLE account_balances;

-- A provider's settled earnings are claimable at once: `provider:<wallet>:earned` is now
-- `provider:<wallet>:claimable`.
UPDATE ledger_transfers SET debit = substr(debit, 1, length(debit) - 6) || 'claimable'
WHERE debit LIKE 'provider:%:earned';
UPDATE ledger_transfers SET credit = substr(credit, 1, length(credit) - 6) || 'claimable'
WHERE credit LIKE 'provider:%:earned';
UPDATE ledger_balances SET account = substr(account, 1, length(account) - 6) || 'claimable'
WHERE account LIKE 'provider:%:earned';

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER ledger_transfers_append_only BEFORE UPDATE OR DELETE ON ledger_transfers
FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Gross hire earnings paid to the device's provider out of escrow so far (provider fee
-- included), and when they were last settled. The active devices' budgets less what they
-- earned add up to the escrow account's balance.
ALTER TABLE cluster_devices ADD COLUMN earned BIGINT NOT NULL DEFAULT 0 CHECK (earned >= 0);
ALTER TABLE cluster_devices ADD COLUMN settled_at BIGINT;

-- One row per closed hourly block (number = hours since the Unix epoch); the primary key
-- makes closing a block twice impossible, even from two server processes.
CREATE TABLE reward_blocks (
    number            BIGINT  PRIMARY KEY,
    closed_at         BIGINT  NOT NULL,
    emission          BIGINT  NOT NULL CHECK (emission >= 0),
    gpu_pool          BIGINT  NOT NULL CHECK (gpu_pool >= 0),
    cpu_pool          BIGINT  NOT NULL CHECK (cpu_pool >= 0),
    paid              BIGINT  NOT NULL CHECK (paid >= 0 AND paid <= emission),
    devices_scored    BIGINT  NOT NULL,
    devices_rewarded  BIGINT  NOT NULL
);

-- Each device online in a block: its score, its share of its pool (parts per million), its
-- reward in token base units, or why it earned nothing.
CREATE TABLE block_rewards (
    block_number  BIGINT  NOT NULL REFERENCES reward_blocks (number),
    device_id     TEXT    NOT NULL,
    owner_wallet  TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('gpu', 'cpu')),
    score         BIGINT  NOT NULL CHECK (score >= 0),
    share_ppm     BIGINT  NOT NULL CHECK (share_ppm BETWEEN 0 AND 1000000),
    reward        BIGINT  NOT NULL CHECK (reward >= 0),
    ineligible    TEXT,
    PRIMARY KEY (block_number, device_id)
);
CREATE INDEX block_rewards_owner ON block_rewards (owner_wallet, block_number);
CREATE INDEX block_rewards_device ON block_rewards (device_id, block_number);

-- Claims of claimable balance to the provider's wallet. The signed transaction is stored
-- (with the last block height at which it can land) before it is first sent, so a worker
-- that stops at any point leaves a payout the next one finishes without paying twice.
CREATE TABLE payouts (
    id                 TEXT    PRIMARY KEY,
    owner_wallet       TEXT    NOT NULL,
    asset              TEXT    NOT NULL CHECK (asset IN ('usdc', 'token')),
    amount             BIGINT  NOT NULL CHECK (amount > 0),
    idempotency_key    TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('requested', 'submitted', 'confirmed', 'failed')),
    status_reason      TEXT    NOT NULL DEFAULT '',
    requested_at       BIGINT  NOT NULL,
    -- The transaction in flight: its signature, wire bytes (base64) and expiry height.
    signature          TEXT,
    wire               TEXT,
    last_valid_height  BIGINT,
    sends              BIGINT  NOT NULL DEFAULT 0,
    -- A worker holds the payout until then; another leaves it alone meanwhile.
    lease_until        BIGINT  NOT NULL DEFAULT 0,
    finished_at        BIGINT,
    UNIQUE (owner_wallet, idempotency_key),
    CHECK (status = 'requested' OR signature IS NOT NULL)
);
CREATE INDEX payouts_owner ON payouts (owner_wallet, requested_at);
CREATE INDEX payouts_open ON payouts (lease_until) WHERE status IN ('requested', 'submitted');

-- Every transaction a payout was signed as: a new one is made only once the previous one can
-- no longer land, and all of them are checked before a payout is called failed.
CREATE TABLE payout_signatures (
    signature          TEXT    PRIMARY KEY,
    payout_id          TEXT    NOT NULL REFERENCES payouts (id),
    last_valid_height  BIGINT  NOT NULL,
    signed_at          BIGINT  NOT NULL
);
CREATE INDEX payout_signatures_payout ON payout_signatures (payout_id);

-- Deposits from a renter's wallet: the server builds the transfer, the wallet signs it, the
-- server sends it and credits the balance once it is confirmed, once per signature (the
-- ledger key is the signature).
CREATE TABLE deposits (
    id                 TEXT    PRIMARY KEY,
    user_id            BIGINT  NOT NULL REFERENCES users (id),
    wallet             TEXT    NOT NULL,
    asset              TEXT    NOT NULL CHECK (asset IN ('usdc', 'token')),
    amount             BIGINT  NOT NULL CHECK (amount > 0),
    status             TEXT    NOT NULL CHECK (status IN ('awaiting_signature', 'submitted', 'confirmed', 'failed', 'expired')),
    status_reason      TEXT    NOT NULL DEFAULT '',
    -- The message the wallet must sign (base64) and the last block height it can land at.
    message            TEXT    NOT NULL,
    last_valid_height  BIGINT  NOT NULL,
    signature          TEXT    UNIQUE,
    wire               TEXT,
    lease_until        BIGINT  NOT NULL DEFAULT 0,
    created_at         BIGINT  NOT NULL,
    finished_at        BIGINT
);
CREATE INDEX deposits_user ON deposits (user_id, created_at);
CREATE INDEX deposits_open ON deposits (lease_until) WHERE status IN ('awaiting_signature', 'submitted');
