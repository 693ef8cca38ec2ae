-- Screeb's webhook v2.0.0 (`screeb-v2`) joins the payload formats. The checks are replaced
-- NOT VALID, so adding them scans nothing under the table's lock; the next migration validates
-- them under a lock that lets writes through.
ALTER TABLE webhook_subscriptions DROP CONSTRAINT webhook_subscriptions_format;
ALTER TABLE webhook_subscriptions ADD CONSTRAINT webhook_subscriptions_format
    CHECK (format IN ('beckon', '1flow', 'seismic', 'screeb-v2')) NOT VALID;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_format;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_format
    CHECK (format IN ('beckon', '1flow', 'seismic', 'screeb-v2')) NOT VALID;
