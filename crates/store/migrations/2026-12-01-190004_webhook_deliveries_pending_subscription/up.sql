-- The poller reads each subscription's due deliveries in the order they fell due. Built
-- CONCURRENTLY (so outside a transaction, and alone in its migration): a plain CREATE INDEX
-- would block every delivery write while it builds on a large table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_pending_subscription
    ON webhook_deliveries (subscription_id, next_attempt_at) WHERE status = 'pending';
