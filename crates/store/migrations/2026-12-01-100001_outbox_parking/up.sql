-- A row the relay could not publish (the broker refused it) waits before the next try, so it
-- never blocks the rows behind it.
ALTER TABLE outbox ADD COLUMN attempts int NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN not_before timestamptz;
