-- The history sweep deletes the oldest messages first. Built CONCURRENTLY (so outside a
-- transaction, and alone in its migration): a plain CREATE INDEX would block every write to
-- webhook_messages while it builds on a large table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_messages_age ON webhook_messages (created_at);
