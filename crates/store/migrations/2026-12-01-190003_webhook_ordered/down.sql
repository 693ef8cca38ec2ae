DROP INDEX webhook_deliveries_pending_subscription;
ALTER TABLE webhook_subscriptions DROP COLUMN ordered;
