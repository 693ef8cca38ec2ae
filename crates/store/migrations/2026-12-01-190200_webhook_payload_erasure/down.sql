-- The previous schema cannot hold a message without a body: those are deleted (with their
-- deliveries and attempts), as the history sweep would have done later.
DELETE FROM webhook_messages WHERE body_encrypted IS NULL;
ALTER TABLE webhook_messages DROP CONSTRAINT webhook_messages_body_or_erased;
ALTER TABLE webhook_messages
    ALTER COLUMN body_encrypted SET NOT NULL,
    DROP COLUMN payload_erased_at;
