DROP INDEX webhook_messages_user;
ALTER TABLE webhook_messages DROP COLUMN user_ref;
