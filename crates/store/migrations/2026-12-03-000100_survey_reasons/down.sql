DELETE FROM trigger_surveys WHERE outcome IN ('not_live', 'not_subscribed');
ALTER TABLE trigger_surveys DROP CONSTRAINT trigger_surveys_outcome_check;
ALTER TABLE trigger_surveys ADD CONSTRAINT trigger_surveys_outcome_check
    CHECK (outcome IN ('created', 'cooldown', 'sample', 'errored', 'condition_false', 'capped')) NOT VALID;
ALTER TABLE trigger_surveys DROP COLUMN until;
