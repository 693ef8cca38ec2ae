-- The identity of the request a key stands for, kept when a retry takes over a lapsed lease:
-- what the request creates is derived from it, so running it again finds what the first run
-- committed instead of creating it a second time.
ALTER TABLE idempotency_keys ADD COLUMN request_id uuid;
