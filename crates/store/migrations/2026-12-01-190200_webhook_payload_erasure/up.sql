-- Payload retention: past its period a message's sealed body (magic links, personal data) is
-- erased — set NULL, with the time in `payload_erased_at` — while the message row, its
-- deliveries and attempts stay as history. Dropping NOT NULL and adding a column without a
-- default change only the catalogue. The check is added NOT VALID, so nothing waits while
-- existing rows are checked; the next migration validates it under a lock that lets writes
-- through.
ALTER TABLE webhook_messages
    ALTER COLUMN body_encrypted DROP NOT NULL,
    ADD COLUMN payload_erased_at timestamptz;
ALTER TABLE webhook_messages ADD CONSTRAINT webhook_messages_body_or_erased
    CHECK (body_encrypted IS NOT NULL OR payload_erased_at IS NOT NULL) NOT VALID;
