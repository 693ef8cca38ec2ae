UPDATE responses SET status = 'completed' WHERE status = 'closed';
ALTER TABLE responses
    DROP CONSTRAINT responses_channel,
    DROP CONSTRAINT responses_status_check,
    DROP COLUMN channel, DROP COLUMN locale, DROP COLUMN user_agent;
ALTER TABLE responses ADD CONSTRAINT responses_status_check
    CHECK (status IN ('in_progress', 'completed'));
