-- What each posting was for, written with it. Statements used to parse it back out of the
-- idempotency key's prefix; now the services name it (domain::ledger::PostingKind) and
-- statements read it back exhaustively. A table of its own because ledger_transactions is
-- append-only: its existing rows get their kind here, once, from the prefixes the services
-- used (a key of no known prefix was shown as a credit, and stays one).
CREATE TABLE ledger_transaction_kinds (
    transaction_id  BIGINT  PRIMARY KEY REFERENCES ledger_transactions (id),
    kind            TEXT    NOT NULL CHECK (kind IN ('cluster_charge', 'cluster_extension',
                        'cluster_end', 'device_loss', 'hire_settlement', 'block_rewards',
                        'payout_claim', 'payout_landed', 'payout_returned', 'deposit',
                        'welcome_credit', 'operator_credit')),
    -- The cluster whose money it moved, if any.
    cluster_id      TEXT
);

WITH parts AS (
    SELECT id,
           CASE WHEN strpos(idempotency_key, ':') > 0
                THEN substr(idempotency_key, 1, strpos(idempotency_key, ':') - 1) ELSE '' END AS prefix,
           substr(idempotency_key, strpos(idempotency_key, ':') + 1) AS rest
    FROM ledger_transactions)
INSERT INTO ledger_transaction_kinds (transaction_id, kind, cluster_id)
SELECT id,
       CASE prefix
           WHEN 'deploy' THEN 'cluster_charge'
           WHEN 'extend' THEN 'cluster_extension'
           WHEN 'finish' THEN 'cluster_end'
           WHEN 'lose' THEN 'device_loss'
           WHEN 'settle' THEN 'hire_settlement'
           WHEN 'block' THEN 'block_rewards'
           WHEN 'payout' THEN 'payout_claim'
           WHEN 'paid' THEN 'payout_landed'
           WHEN 'unpaid' THEN 'payout_returned'
           WHEN 'deposit' THEN 'deposit'
           WHEN 'welcome' THEN 'welcome_credit'
           ELSE 'operator_credit'
       END,
       CASE WHEN prefix IN ('deploy', 'extend', 'finish', 'lose', 'settle') THEN
           CASE WHEN strpos(rest, ':') > 0 THEN substr(rest, 1, strpos(rest, ':') - 1) ELSE rest END
       END
FROM parts;

CREATE INDEX ledger_transaction_kinds_cluster ON ledger_transaction_kinds (cluster_id)
    WHERE cluster_id IS NOT NULL;

CREATE TRIGGER ledger_transaction_kinds_append_only BEFORE UPDATE OR DELETE ON ledger_transaction_kinds
FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
