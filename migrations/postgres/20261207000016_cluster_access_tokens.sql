-- A cluster's access token for its tunnels, rotatable by its renter: only the SHA-256 of the
-- token is kept (the token is shown once), with when it was made. Keep in step with the other
-- backend.
ALTER TABLE clusters ADD COLUMN access_token_sha256 TEXT;
ALTER TABLE clusters ADD COLUMN access_token_made_at BIGINT;
