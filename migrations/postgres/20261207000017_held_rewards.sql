-- Time-locked block rewards (issue 23): a block's reward is held until its device next passes
-- a proof of its hardware, then released to the provider's claimable balance, or forfeited to
-- the rewards pool when that proof fails or goes unanswered. Rewards recorded before this were
-- paid out claimable at once, so they stand as released. Keep in step with the other backend.
ALTER TABLE block_rewards ADD COLUMN hold TEXT NOT NULL DEFAULT 'released'
    CHECK (hold IN ('held', 'released', 'forfeited'));
-- A proof settles its device's held rows: few per device, found without reading the others.
CREATE INDEX block_rewards_held ON block_rewards (device_id) WHERE hold = 'held';

-- Two posting kinds more.
ALTER TABLE ledger_transaction_kinds DROP CONSTRAINT ledger_transaction_kinds_kind_check;
ALTER TABLE ledger_transaction_kinds ADD CONSTRAINT ledger_transaction_kinds_kind_check
    CHECK (kind IN ('cluster_charge', 'cluster_extension',
                    'cluster_end', 'device_loss', 'hire_settlement', 'block_rewards',
                    'rewards_released', 'rewards_forfeited',
                    'payout_claim', 'payout_landed', 'payout_returned', 'deposit',
                    'welcome_credit', 'operator_credit'));

-- Promotional credit pays only other, established providers (issue 23, domain::promo): a
-- cluster paid while its renter was bound is marked, so its replacements keep to the rule;
-- providers' account age is read by when their account was made.
ALTER TABLE clusters ADD COLUMN promotional BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX users_created_at ON users (created_at);
