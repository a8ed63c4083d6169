-- Failed and missed proofs by deadline: a block's close forfeits the hour's reward of each
-- device with a proof due in that hour that failed or went unanswered.
CREATE INDEX device_challenges_failed ON device_challenges (deadline_at, device_id)
    WHERE outcome IN ('failed', 'expired');
