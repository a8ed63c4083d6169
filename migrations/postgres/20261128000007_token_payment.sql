-- Clusters paid in the network token: the operator's price (micro-USD per whole token) at the
-- deploy, which also prices the cluster's extensions and converts its refunds back to tokens.
-- Set exactly when the cluster is paid in the token. Keep in step with the other backend.
ALTER TABLE clusters ADD COLUMN token_price BIGINT
    CHECK (token_price > 0 AND payment = 'token' OR token_price IS NULL AND payment = 'usdc');
