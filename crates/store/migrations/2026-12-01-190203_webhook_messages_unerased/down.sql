DROP INDEX CONCURRENTLY IF EXISTS webhook_messages_unerased;
