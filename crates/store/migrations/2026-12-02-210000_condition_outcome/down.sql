ALTER TABLE trigger_surveys DROP CONSTRAINT trigger_surveys_outcome_check;
ALTER TABLE trigger_surveys ADD CONSTRAINT trigger_surveys_outcome_check
    CHECK (outcome IN ('created', 'cooldown', 'sample', 'errored')) NOT VALID;
ALTER TABLE triggers DROP COLUMN condition_count;
