-- Deleting a delivery (the history sweep, erasing a user, deleting a subscription) cascades
-- to its attempts by delivery_id; without an index every deleted delivery scans the whole
-- attempt log. Built CONCURRENTLY, alone.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery_id);
