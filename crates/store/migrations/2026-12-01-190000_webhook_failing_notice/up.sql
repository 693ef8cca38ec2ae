-- When the last `webhook.failing` notice about a subscription's failure streak went out: the
-- first failure of a streak sends one, then at most one a day while the streak lasts. A
-- notice older than the streak's start belongs to an earlier streak.
ALTER TABLE webhook_subscriptions ADD COLUMN failing_notified_at timestamptz;
