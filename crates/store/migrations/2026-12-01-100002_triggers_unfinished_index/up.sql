-- The stalled-trigger sweep looks only at unfinished triggers, a small part of the table.
-- Built CONCURRENTLY (so outside a transaction, and alone in its migration): a plain CREATE
-- INDEX would block every write to triggers while it builds on a large table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS triggers_unfinished ON triggers (created_at)
    WHERE status IN ('queued', 'processing');
