-- Payload formats: a subscription receives its webhooks in Beckon's shape or in the shape of
-- another product's webhooks (`1flow`, `seismic`), at a pinned version. Each delivery pins
-- the format and version its subscription had when the delivery was created, so changing them
-- takes effect for new messages only; retries, resends and recoveries keep the shape the
-- delivery began with. Columns with a constant default change only the catalogue; the checks are added
-- NOT VALID and validated by the next migration under a lock that lets writes through.
ALTER TABLE webhook_subscriptions ADD COLUMN format text NOT NULL DEFAULT 'beckon';
ALTER TABLE webhook_deliveries
    ADD COLUMN format text NOT NULL DEFAULT 'beckon',
    ADD COLUMN payload_version integer NOT NULL DEFAULT 1;
ALTER TABLE webhook_subscriptions ADD CONSTRAINT webhook_subscriptions_format
    CHECK (format IN ('beckon', '1flow', 'seismic')) NOT VALID;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_format
    CHECK (format IN ('beckon', '1flow', 'seismic')) NOT VALID;
