-- Several server replicas on one PostgreSQL (issue 16). Keep in step with the other backend.

-- Every serving process, renewing its row while it lives: a replica whose row is older than
-- the down window is dead, and the devices it served are taken over.
CREATE TABLE replicas (
    id          TEXT    PRIMARY KEY,
    started_at  BIGINT  NOT NULL,
    renewed_at  BIGINT  NOT NULL
);

-- Leases of work that one process does at a time (the singleton background jobs; on SQLite,
-- serving the file at all): held while renewed before it expires.
CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL
);

-- The change feed: a row per committed change to a device that replicas mirror in memory
-- (status, verification, tier, hire, assignment), written in the change's transaction.
-- Every replica re-reads the devices named here, in order, and mirrors them.
CREATE TABLE device_changes (
    seq        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  TEXT    NOT NULL,
    at         BIGINT  NOT NULL
);
CREATE INDEX device_changes_at ON device_changes (at);

-- The replica hearing a device's agent, and the address it heard it from (where renters and
-- the cluster's other devices reach it): written when the agent moves, not per heartbeat.
ALTER TABLE devices ADD COLUMN served_by TEXT;
ALTER TABLE devices ADD COLUMN last_address TEXT;
CREATE INDEX devices_served_by ON devices (served_by);
