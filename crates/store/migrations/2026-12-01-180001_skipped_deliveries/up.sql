-- A delivery emitted while its subscription was disabled is kept as `skipped` (never
-- attempted) so that re-enabling and recovering sends what was missed. The new check is added
-- NOT VALID, so nothing waits while existing rows are checked; the next migration validates
-- it under a lock that lets writes through.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('pending', 'succeeded', 'failed', 'skipped')) NOT VALID;
