ALTER TABLE webhook_subscriptions DROP COLUMN failing_notified_at;
