ALTER TABLE webhook_subscriptions DROP COLUMN rate_limit, DROP COLUMN rate_next_slot;
