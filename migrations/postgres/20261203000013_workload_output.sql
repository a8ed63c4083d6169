-- What workloads print, as their devices' agents ship it: the newest lines of each device and
-- cluster (the service trims the rest), read by the cluster's renter after a line cursor.
CREATE TABLE workload_output (
    cluster_id  TEXT    NOT NULL REFERENCES clusters (id),
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    -- The agent's line id: increasing per device and cluster, across the agent's restarts.
    line        BIGINT  NOT NULL CHECK (line >= 0),
    -- When the server received it.
    at          BIGINT  NOT NULL,
    text        TEXT    NOT NULL,
    PRIMARY KEY (cluster_id, device_id, line)
);
