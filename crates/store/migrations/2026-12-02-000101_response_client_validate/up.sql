ALTER TABLE responses VALIDATE CONSTRAINT responses_status_check;
ALTER TABLE responses VALIDATE CONSTRAINT responses_channel;
