DROP TABLE users;
DROP TABLE project_event_keys;
ALTER TABLE surveys DROP COLUMN trial_reminder_lead_seconds;
DROP INDEX triggers_reminders;
DROP INDEX triggers_due;
ALTER TABLE triggers
    DROP COLUMN job_id, DROP COLUMN source, DROP COLUMN event_data, DROP COLUMN variables,
    DROP COLUMN scheduled_for, DROP COLUMN survey_id, DROP COLUMN reminder_for;
