-- Compliance attestations (DESIGN.md §2): the operator's list of certified facilities, each
-- holding SOC 2 and/or HIPAA until a date, and the facility each attested device is in. A
-- device meets a standard while its facility holds it and `certified_until` has not passed;
-- clusters that ask for one hire only such devices (checked again inside the hiring
-- transaction). Keep in step with the other backend.
CREATE TABLE facilities (
    name             TEXT     PRIMARY KEY,
    soc2             BOOLEAN  NOT NULL,
    hipaa            BOOLEAN  NOT NULL,
    certified_until  BIGINT   NOT NULL,
    updated_at       BIGINT   NOT NULL,
    CHECK (soc2 OR hipaa)
);
ALTER TABLE devices ADD COLUMN facility TEXT REFERENCES facilities (name);
CREATE INDEX devices_by_facility ON devices (facility) WHERE facility IS NOT NULL;
