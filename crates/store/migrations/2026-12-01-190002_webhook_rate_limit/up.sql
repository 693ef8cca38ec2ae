-- Svix's per-endpoint rate limit: at most `rate_limit` requests a second to the endpoint
-- (null: no limit). `rate_next_slot` is when its next request may go out (the theoretical
-- arrival time of the generic cell rate algorithm), shared by every webhook process.
ALTER TABLE webhook_subscriptions
    ADD COLUMN rate_limit integer CHECK (rate_limit BETWEEN 1 AND 1000),
    ADD COLUMN rate_next_slot timestamptz;
