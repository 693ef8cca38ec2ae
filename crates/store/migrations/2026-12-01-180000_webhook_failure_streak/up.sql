-- A subscription is disabled for failing continuously, not for being quiet: the current
-- failure streak's start and length (cleared by any success), and when it was disabled.
ALTER TABLE webhook_subscriptions
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN failures_in_streak integer NOT NULL DEFAULT 0,
    ADD COLUMN disabled_at timestamptz;
