-- The user a webhook message is about, so erasing a user can delete the messages kept about
-- them (their bodies are sealed and cannot be searched).
ALTER TABLE webhook_messages ADD COLUMN user_ref text;
CREATE INDEX webhook_messages_user ON webhook_messages (project_id, user_ref);
