-- Clusters (what renters hire), the devices in them and their timeline, and the double-entry
-- ledger that holds the money. Times are UTC milliseconds; money is integer micro-USD.
-- Keep in step with ../postgres.

CREATE TABLE clusters (
    id               TEXT    PRIMARY KEY,
    user_id          BIGINT  NOT NULL REFERENCES users (id),
    name             TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('ray', 'mega_ray', 'kubernetes', 'bare_metal', 'container')),
    purpose          TEXT    NOT NULL CHECK (purpose IN ('general', 'inference', 'train')),
    -- A canonical GPU model name, or 'cpu'.
    hardware         TEXT    NOT NULL,
    units            BIGINT  NOT NULL CHECK (units > 0),
    -- Comma-separated ISO codes as ordered; '' for anywhere.
    countries        TEXT    NOT NULL,
    min_tier         TEXT    CHECK (min_tier IN ('ultra', 'high', 'medium', 'low')),
    compliance       TEXT    NOT NULL CHECK (compliance IN ('e2e_encrypted', 'soc2', 'hipaa')),
    payment          TEXT    NOT NULL CHECK (payment IN ('usdc', 'token')),
    -- The workload as JSON (image, command, port, env).
    workload         TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending_payment', 'deploying', 'running', 'completed',
                                                       'terminated', 'failed')),
    status_reason    TEXT    NOT NULL,
    rate             BIGINT  NOT NULL CHECK (rate >= 0),
    -- Paid hours, extensions included.
    hours            BIGINT  NOT NULL CHECK (hours > 0),
    -- Everything charged (extensions and fees included), and the part of it held in escrow.
    charged          BIGINT  NOT NULL CHECK (charged >= 0),
    escrowed         BIGINT  NOT NULL CHECK (escrowed >= 0),
    -- Returned to the renter so far (terminations, failures, lost devices).
    refunded         BIGINT  NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    idempotency_key  TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    -- A deploying cluster that is not running by then fails and is refunded.
    deadline_at      BIGINT  NOT NULL,
    running_at       BIGINT,
    ends_at          BIGINT,
    finished_at      BIGINT,
    UNIQUE (user_id, name),
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX clusters_user ON clusters (user_id, created_at);
CREATE INDEX clusters_status ON clusters (status, deadline_at);

CREATE TABLE cluster_devices (
    cluster_id  TEXT    NOT NULL REFERENCES clusters (id),
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    role        TEXT    NOT NULL CHECK (role IN ('head', 'worker')),
    units       BIGINT  NOT NULL CHECK (units > 0),
    -- The cluster's escrow still held for this device: earned evenly from its start (the
    -- cluster's running_at, or joined_at for a replacement) to the cluster's ends_at. The
    -- active devices' budgets add up to the escrow account's balance; zero once it left.
    budget      BIGINT  NOT NULL CHECK (budget >= 0),
    -- What the device's agent last reported for this cluster's workload.
    state       TEXT    NOT NULL CHECK (state IN ('assigned', 'starting', 'running', 'stopped', 'failed')),
    joined_at   BIGINT  NOT NULL,
    left_at     BIGINT,
    PRIMARY KEY (cluster_id, device_id)
);
CREATE INDEX cluster_devices_device ON cluster_devices (device_id, left_at);

CREATE TABLE cluster_events (
    id          INTEGER PRIMARY KEY,
    cluster_id  TEXT    NOT NULL REFERENCES clusters (id),
    at          BIGINT  NOT NULL,
    detail      TEXT    NOT NULL
);
CREATE INDEX cluster_events_cluster ON cluster_events (cluster_id, at);

-- One row per balanced movement; the unique key makes recording it twice impossible.
CREATE TABLE ledger_transactions (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    at               BIGINT  NOT NULL,
    memo             TEXT    NOT NULL
);

CREATE TABLE ledger_entries (
    transaction_id  BIGINT  NOT NULL REFERENCES ledger_transactions (id),
    account         TEXT    NOT NULL,
    amount          BIGINT  NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (transaction_id, account)
);
CREATE INDEX ledger_entries_account ON ledger_entries (account, transaction_id);

-- Balances kept with the entries in the same transaction. Only the outside world (external:*)
-- may go below zero, so no renter can spend money they do not have, even under races.
CREATE TABLE account_balances (
    account  TEXT    PRIMARY KEY,
    balance  BIGINT  NOT NULL CHECK (balance >= 0 OR account LIKE 'external:%')
);
