-- An ordered subscription gets the events about one user one at a time, in the order they
-- occurred: a delivery waits while an earlier one about the same user is pending.
ALTER TABLE webhook_subscriptions ADD COLUMN ordered boolean NOT NULL DEFAULT false;
