-- Covered by webhook_deliveries_subscription_paged, whose columns begin with its own.
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_subscription;
