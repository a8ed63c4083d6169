-- Bytes carried through the platform's tunnels to and from a cluster's workloads, both ways,
-- counted when each tunnelled connection closes. Keep in step with the other backend.
ALTER TABLE clusters ADD COLUMN tunnel_bytes BIGINT NOT NULL DEFAULT 0;
