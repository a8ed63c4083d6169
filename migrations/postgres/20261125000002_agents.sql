-- Devices enrolled through the Worker tab and run by the agent: registration tokens, agent
-- credentials, recorded status history, verification challenges and hourly uptime buckets.
-- Keep in step with ../sqlite.

-- A device added in the Worker tab before its agent first calls in. Only the SHA-256 of the
-- single-use token is kept.
CREATE TABLE device_registrations (
    token_hash    TEXT    PRIMARY KEY,
    device_id     TEXT    NOT NULL UNIQUE,
    owner_wallet  TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    os            TEXT    NOT NULL CHECK (os IN ('linux', 'windows', 'macos')),
    kind          TEXT    NOT NULL CHECK (kind IN ('gpu', 'cpu')),
    country       TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    used_at       BIGINT
);
CREATE INDEX device_registrations_owner ON device_registrations (owner_wallet, created_at);

ALTER TABLE devices ADD COLUMN disk_gb BIGINT NOT NULL DEFAULT 0;
-- What the agent reported for the GPUs, verbatim, so unsupported hardware can be shown.
ALTER TABLE devices ADD COLUMN reported_gpus TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN agent_version TEXT;
-- SHA-256 of the agent's bearer credential; NULL when revoked or for demo devices without an agent.
ALTER TABLE devices ADD COLUMN credential_hash TEXT;
ALTER TABLE devices ADD COLUMN status_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN status_changed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN verification_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN verified_at BIGINT;
ALTER TABLE devices ADD COLUMN download_mb_per_s BIGINT;
ALTER TABLE devices ADD COLUMN upload_mb_per_s BIGINT;
ALTER TABLE devices ADD COLUMN latency_ms BIGINT;
ALTER TABLE devices ADD COLUMN measured_at BIGINT;

-- Every status change with its reason, idle-cap violations and credential changes. Also the
-- outbox other services read (a hired device going down, for provisioning).
CREATE TABLE device_events (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id    TEXT    NOT NULL REFERENCES devices (id),
    at           BIGINT  NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('status', 'violation', 'credential')),
    from_status  TEXT,
    to_status    TEXT,
    detail       TEXT    NOT NULL
);
CREATE INDEX device_events_device ON device_events (device_id, at);

CREATE TABLE device_challenges (
    id           TEXT    PRIMARY KEY,
    device_id    TEXT    NOT NULL REFERENCES devices (id),
    seed         BIGINT  NOT NULL,
    size         BIGINT  NOT NULL,
    products     BIGINT  NOT NULL,
    openings     BIGINT  NOT NULL,
    issued_at    BIGINT  NOT NULL,
    deadline_at  BIGINT  NOT NULL,
    answered_at  BIGINT,
    outcome      TEXT    CHECK (outcome IN ('passed', 'failed', 'expired')),
    detail       TEXT
);
CREATE INDEX device_challenges_device ON device_challenges (device_id, issued_at);
CREATE INDEX device_challenges_open ON device_challenges (deadline_at) WHERE outcome IS NULL;

-- Milliseconds online per device and UTC hour, merged from heartbeats in memory and written in batches.
CREATE TABLE device_uptime (
    device_id     TEXT    NOT NULL,
    hour          BIGINT  NOT NULL,
    online_ms     BIGINT  NOT NULL,
    samples       BIGINT  NOT NULL,
    gpu_util_sum  BIGINT  NOT NULL,
    cpu_util_sum  BIGINT  NOT NULL,
    PRIMARY KEY (device_id, hour)
);
