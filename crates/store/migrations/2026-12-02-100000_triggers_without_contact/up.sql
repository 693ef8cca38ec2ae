-- An event may name no contact (events/send without user_info.contact_external_id): its
-- trigger has no user, and completes without being matched, saying why in `reason` (a
-- `domain::trigger::TriggerReason`). Dropping NOT NULL and adding a column without a default
-- change only the catalogue. The check is added NOT VALID, so nothing waits while existing
-- rows are checked; the next migration validates it under a lock that lets writes through.
ALTER TABLE triggers
    ALTER COLUMN user_ref DROP NOT NULL,
    ADD COLUMN reason text;
ALTER TABLE triggers ADD CONSTRAINT triggers_reason_known
    CHECK (reason IN ('no_contact')) NOT VALID;
