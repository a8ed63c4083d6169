-- Foundation schema (SQLite). Times are UTC milliseconds since the Unix epoch (BIGINT);
-- money, where it appears, is integer micro-USD. Keep in step with ../postgres.

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    wallet      TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL
);

-- Single-use Sign-In With Solana nonces, issued to one wallet for a short time.
CREATE TABLE auth_nonces (
    nonce       TEXT    PRIMARY KEY,
    wallet      TEXT    NOT NULL,
    issued_at   BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT
);
CREATE INDEX auth_nonces_expires_at ON auth_nonces (expires_at);

-- Server-side sessions; the cookie carries a random token, the table only its SHA-256.
CREATE TABLE sessions (
    token_hash    TEXT    PRIMARY KEY,
    user_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE devices (
    id                 TEXT     PRIMARY KEY,
    owner_wallet       TEXT     NOT NULL,
    name               TEXT     NOT NULL,
    os                 TEXT     NOT NULL CHECK (os IN ('linux', 'windows', 'macos')),
    kind               TEXT     NOT NULL CHECK (kind IN ('gpu', 'cpu')),
    gpu_model          TEXT,
    gpu_count          BIGINT   NOT NULL DEFAULT 0 CHECK (gpu_count >= 0),
    cpu_model          TEXT     NOT NULL,
    cpu_cores          BIGINT   NOT NULL CHECK (cpu_cores > 0),
    ram_gb             BIGINT   NOT NULL CHECK (ram_gb > 0),
    country            TEXT     NOT NULL,
    tier               TEXT     CHECK (tier IN ('ultra', 'high', 'medium', 'low')),
    status             TEXT     NOT NULL CHECK (status IN ('pending', 'idle', 'hired', 'paused', 'down',
                                                          'blocked', 'unsupported', 'inactive', 'terminated')),
    verified           BOOLEAN  NOT NULL DEFAULT FALSE,
    simulated          BOOLEAN  NOT NULL DEFAULT FALSE,
    created_at         BIGINT   NOT NULL,
    last_heartbeat_at  BIGINT
);
CREATE INDEX devices_owner_wallet ON devices (owner_wallet);
CREATE INDEX devices_status_model ON devices (status, gpu_model);
