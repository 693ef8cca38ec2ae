-- An ordered subscription gets the events about one user one at a time, in the order they
-- occurred: a delivery waits while an earlier one about the same user is pending.
ALTER TABLE webhook_subscriptions ADD COLUMN ordered boolean NOT NULL DEFAULT false;
-- The poller finds the first pending delivery per user of each ordered subscription.
CREATE INDEX webhook_deliveries_pending_subscription ON webhook_deliveries (subscription_id)
    WHERE status = 'pending';
