DROP INDEX CONCURRENTLY IF EXISTS webhook_attempts_delivery;
