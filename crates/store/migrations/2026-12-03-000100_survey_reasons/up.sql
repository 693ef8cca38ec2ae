-- Every survey of the project has a reason on a trigger: those the event did not match are
-- recorded as `not_live` or `not_subscribed` (and counted as no match), and a cooldown says
-- until when it lasts. The outcome check is replaced NOT VALID and validated by the next
-- migration, so the large table is not scanned under an exclusive lock.
ALTER TABLE trigger_surveys ADD COLUMN until timestamptz;
ALTER TABLE trigger_surveys DROP CONSTRAINT trigger_surveys_outcome_check;
ALTER TABLE trigger_surveys ADD CONSTRAINT trigger_surveys_outcome_check
    CHECK (outcome IN ('created', 'cooldown', 'sample', 'errored', 'condition_false', 'capped',
                       'not_live', 'not_subscribed')) NOT VALID;
