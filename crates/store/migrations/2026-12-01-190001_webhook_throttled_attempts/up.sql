-- Attempts an endpoint answered 429 with Retry-After: they wait as asked, but do not use up
-- the retry policy's attempts, which count `attempts - throttled`.
ALTER TABLE webhook_deliveries ADD COLUMN throttled integer NOT NULL DEFAULT 0;
