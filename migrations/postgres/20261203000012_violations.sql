-- Idle-cap violations by time: a block's close forfeits the hour's reward of each device that
-- had one, and the heartbeat counts a device's violations of the last day to block it for abuse.
CREATE INDEX device_events_violations ON device_events (at, device_id) WHERE kind = 'violation';
