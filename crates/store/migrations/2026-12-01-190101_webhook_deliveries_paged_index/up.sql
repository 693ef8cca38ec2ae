-- A subscription's deliveries page by (created_at, id); a batch's deliveries share one
-- created_at. Built CONCURRENTLY (so outside a transaction, and alone in its migration): a
-- plain CREATE INDEX would block every write to the table while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_subscription_paged
    ON webhook_deliveries (subscription_id, created_at, id);
