-- Time-locked block rewards (issue 23): a block's reward is held until its device next passes
-- a proof of its hardware, then released to the provider's claimable balance, or forfeited to
-- the rewards pool when that proof fails or goes unanswered. Rewards recorded before this were
-- paid out claimable at once, so they stand as released. Keep in step with the other backend.
ALTER TABLE block_rewards ADD COLUMN hold TEXT NOT NULL DEFAULT 'released'
    CHECK (hold IN ('held', 'released', 'forfeited'));
-- A proof settles its device's held rows: few per device, found without reading the others.
CREATE INDEX block_rewards_held ON block_rewards (device_id) WHERE hold = 'held';

-- Two posting kinds more. SQLite cannot change a CHECK in place: the append-only table is
-- rebuilt with its rows, index and triggers.
DROP TRIGGER ledger_transaction_kinds_no_update;
DROP TRIGGER ledger_transaction_kinds_no_delete;
CREATE TABLE ledger_transaction_kinds_new (
    transaction_id  BIGINT  PRIMARY KEY REFERENCES ledger_transactions (id),
    kind            TEXT    NOT NULL CHECK (kind IN ('cluster_charge', 'cluster_extension',
                        'cluster_end', 'device_loss', 'hire_settlement', 'block_rewards',
                        'rewards_released', 'rewards_forfeited',
                        'payout_claim', 'payout_landed', 'payout_returned', 'deposit',
                        'welcome_credit', 'operator_credit')),
    -- The cluster whose money it moved, if any.
    cluster_id      TEXT
);
INSERT INTO ledger_transaction_kinds_new (transaction_id, kind, cluster_id)
SELECT transaction_id, kind, cluster_id FROM ledger_transaction_kinds;
DROP TABLE ledger_transaction_kinds;
ALTER TABLE ledger_transaction_kinds_new RENAME TO ledger_transaction_kinds;
CREATE INDEX ledger_transaction_kinds_cluster ON ledger_transaction_kinds (cluster_id)
    WHERE cluster_id IS NOT NULL;
CREATE TRIGGER ledger_transaction_kinds_no_update BEFORE UPDATE ON ledger_transaction_kinds
BEGIN SELECT RAISE(ABORT, 'ledger transactions are append-only'); END;
CREATE TRIGGER ledger_transaction_kinds_no_delete BEFORE DELETE ON ledger_transaction_kinds
BEGIN SELECT RAISE(ABORT, 'ledger transactions are append-only'); END;

-- Promotional credit pays only other, established providers (issue 23, domain::promo): a
-- cluster paid while its renter was bound is marked, so its replacements keep to the rule;
-- providers' account age is read by when their account was made.
ALTER TABLE clusters ADD COLUMN promotional BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX users_created_at ON users (created_at);
