-- Where other replicas reach a replica's tunnel listener (issue 16): a renter's tunnel that
-- arrives at one replica is relayed to the replica its device's agent is connected to. NULL
-- when the replica listens on every interface and was given no --replica-host.
ALTER TABLE replicas ADD COLUMN tunnel_address TEXT;
