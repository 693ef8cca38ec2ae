-- The payload sweep looks for the oldest messages that still hold a body. Without this
-- partial index it would walk, on every pass, past every message it already erased (the
-- history period's worth); with it, erased messages leave the index. Built CONCURRENTLY, alone.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_messages_unerased ON webhook_messages (created_at)
    WHERE body_encrypted IS NOT NULL;
