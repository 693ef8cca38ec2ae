ALTER TABLE webhook_subscriptions DROP COLUMN failing_since, DROP COLUMN failures_in_streak, DROP COLUMN disabled_at;
