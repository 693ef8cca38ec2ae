ALTER TABLE trigger_surveys DROP CONSTRAINT trigger_surveys_outcome_check;
ALTER TABLE trigger_surveys ADD CONSTRAINT trigger_surveys_outcome_check
    CHECK (outcome IN ('created', 'cooldown', 'sample', 'errored', 'condition_false')) NOT VALID;
ALTER TABLE triggers DROP COLUMN cap_count;
ALTER TABLE projects DROP CONSTRAINT projects_cap, DROP COLUMN cap_max, DROP COLUMN cap_period_seconds;
