-- What a device did not earn because it went down or its workload failed while hired: the
-- part of its budget it had not served (before the provider fee), which went to a replacement
-- or back to the renter. The provider's earnings page shows it beside what was earned.
-- Keep in step with the other backend.
ALTER TABLE cluster_devices ADD COLUMN forfeited BIGINT NOT NULL DEFAULT 0 CHECK (forfeited >= 0);
