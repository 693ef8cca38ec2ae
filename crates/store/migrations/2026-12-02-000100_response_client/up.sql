-- What the respondent's client reported when the survey was shown: where (`hosted-page` or
-- `widget`), in which language, with which browser; and `closed`, a response the respondent
-- closed before submitting it. Nullable columns without a default change only the catalogue;
-- the checks are added NOT VALID and validated by the next migration under a lock that lets
-- writes through.
ALTER TABLE responses
    ADD COLUMN channel text,
    ADD COLUMN locale text,
    ADD COLUMN user_agent text,
    DROP CONSTRAINT responses_status_check;
ALTER TABLE responses ADD CONSTRAINT responses_status_check
    CHECK (status IN ('in_progress', 'completed', 'closed')) NOT VALID;
ALTER TABLE responses ADD CONSTRAINT responses_channel
    CHECK (channel IN ('hosted-page', 'widget')) NOT VALID;
