-- The explorer's public cluster list pages by (created_at, id), newest first, with or without
-- a status filter; these keep every page a seek. Keep in step with ../sqlite and ../postgres.
CREATE INDEX clusters_created ON clusters (created_at, id);
CREATE INDEX clusters_status_created ON clusters (status, created_at, id);
-- The front page's most rewarded devices of the newest block, without reading the whole block.
CREATE INDEX block_rewards_top ON block_rewards (block_number, reward);
