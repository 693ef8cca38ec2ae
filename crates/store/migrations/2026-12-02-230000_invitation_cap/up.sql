-- A project's cap on invitations per user across its surveys: at most `cap_max` every
-- `cap_period_seconds` (both null: no cap). A survey the cap leaves out is `capped` on the
-- trigger and counted there. The projects table is small, so its check is added valid; the
-- outcome check is replaced NOT VALID and validated by the next migration.
ALTER TABLE projects
    ADD COLUMN cap_max integer,
    ADD COLUMN cap_period_seconds bigint,
    ADD CONSTRAINT projects_cap CHECK (
        (cap_max IS NULL AND cap_period_seconds IS NULL)
        OR (cap_max BETWEEN 1 AND 100 AND cap_period_seconds BETWEEN 60 AND 31622400));
ALTER TABLE triggers ADD COLUMN cap_count integer NOT NULL DEFAULT 0;
ALTER TABLE trigger_surveys DROP CONSTRAINT trigger_surveys_outcome_check;
ALTER TABLE trigger_surveys ADD CONSTRAINT trigger_surveys_outcome_check
    CHECK (outcome IN ('created', 'cooldown', 'sample', 'errored', 'condition_false', 'capped')) NOT VALID;
