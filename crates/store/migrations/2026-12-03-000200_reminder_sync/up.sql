-- Surveys whose trial reminders must be brought in line with their users: one row per survey
-- whose status, events or reminder lead changed, worked through in batches of users (in
-- user_ref order, after `after_user`) by the matcher, and removed once every user is done.
-- A change while a sync runs starts it over.
CREATE TABLE reminder_sync (
    survey_id    uuid PRIMARY KEY REFERENCES surveys (id) ON DELETE CASCADE,
    requested_at timestamptz NOT NULL DEFAULT now(),
    after_user   text
);
CREATE INDEX reminder_sync_requested ON reminder_sync (requested_at);
