ALTER TABLE outbox DROP COLUMN not_before;
ALTER TABLE outbox DROP COLUMN attempts;
