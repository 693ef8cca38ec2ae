-- Targeting conditions: a matched survey whose conditions were false for an event is recorded
-- as `condition_false` (its reason names the clause), and counted on the trigger. The column's
-- constant default changes only the catalogue; the check is replaced NOT VALID and validated
-- by the next migration under a lock that lets writes through.
ALTER TABLE triggers ADD COLUMN condition_count integer NOT NULL DEFAULT 0;
ALTER TABLE trigger_surveys DROP CONSTRAINT trigger_surveys_outcome_check;
ALTER TABLE trigger_surveys ADD CONSTRAINT trigger_surveys_outcome_check
    CHECK (outcome IN ('created', 'cooldown', 'sample', 'errored', 'condition_false')) NOT VALID;
