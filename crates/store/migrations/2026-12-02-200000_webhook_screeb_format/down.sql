ALTER TABLE webhook_subscriptions DROP CONSTRAINT webhook_subscriptions_format;
ALTER TABLE webhook_subscriptions ADD CONSTRAINT webhook_subscriptions_format
    CHECK (format IN ('beckon', '1flow', 'seismic')) NOT VALID;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_format;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_format
    CHECK (format IN ('beckon', '1flow', 'seismic')) NOT VALID;
