ALTER TABLE webhook_deliveries DROP COLUMN format, DROP COLUMN payload_version;
ALTER TABLE webhook_subscriptions DROP COLUMN format;
