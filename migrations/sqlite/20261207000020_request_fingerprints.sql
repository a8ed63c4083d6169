-- Idempotency keys bound to their request (issue 17): the fingerprint (SHA-256 of the canonical
-- JSON) of the request each key a caller gave was first used with, so the same key with another
-- request is refused (422) instead of answered with the first one's result. Scope: whose keys
-- they are ('deploy:<user id>', 'extend:<cluster id>'); claims compare their payout row.
CREATE TABLE request_fingerprints (
    scope        TEXT    NOT NULL,
    idempotency_key  TEXT  NOT NULL,
    fingerprint  TEXT    NOT NULL,
    at           BIGINT  NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);
