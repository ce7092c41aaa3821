-- When each user was last seen online (milliseconds since the Unix epoch, UTC),
-- recorded from the gateways' presence stream. NULL until the first offline.

ALTER TABLE users ADD COLUMN last_active_at INTEGER;
