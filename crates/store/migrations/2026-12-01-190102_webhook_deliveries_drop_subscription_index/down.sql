CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_subscription
    ON webhook_deliveries (subscription_id, created_at);
