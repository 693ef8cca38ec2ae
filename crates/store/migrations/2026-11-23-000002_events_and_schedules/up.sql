-- What travels with a trigger, and when it is due.
ALTER TABLE triggers
    -- The id of the envelope that carries the event (`job_id` in the events/send answer).
    ADD COLUMN job_id        uuid,
    ADD COLUMN source        jsonb,
    ADD COLUMN event_data    jsonb,
    ADD COLUMN variables     jsonb,
    -- When a scheduled trigger fires; the scheduler claims due rows by the database's clock.
    ADD COLUMN scheduled_for timestamptz,
    -- A trial reminder fires for this one survey only.
    ADD COLUMN survey_id     uuid,
    -- The trial end a trial reminder was computed from.
    ADD COLUMN reminder_for  timestamptz;

CREATE INDEX triggers_due ON triggers (scheduled_for) WHERE status = 'scheduled';
CREATE INDEX triggers_reminders ON triggers (project_id, user_ref, survey_id)
    WHERE trigger_type = 'scheduled' AND survey_id IS NOT NULL;

-- How long before a user's trial ends its `trial_ending_soon` reminder fires.
ALTER TABLE surveys
    ADD COLUMN trial_reminder_lead_seconds bigint NOT NULL DEFAULT 259200
        CHECK (trial_reminder_lead_seconds >= 0);

-- Every event key a survey of the project has ever subscribed to: `events/send` answers 404
-- for a custom event no survey ever listened for.
CREATE TABLE project_event_keys (
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    event_key   text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, event_key)
);
INSERT INTO project_event_keys (project_id, event_key)
SELECT DISTINCT project_id, unnest(trigger_events) FROM surveys
ON CONFLICT DO NOTHING;

-- The users a project has told Beckon about.
CREATE TABLE users (
    project_id     uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_ref       text NOT NULL,
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email          text,
    name           text,
    phone          text,
    attributes     jsonb NOT NULL DEFAULT '{}',
    trial_ends_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_ref)
);
