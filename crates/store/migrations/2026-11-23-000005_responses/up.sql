-- One response per invitation: created when the page first reports itself shown or the first
-- answer arrives, completed when the respondent finishes.
CREATE TABLE responses (
    id              uuid PRIMARY KEY,
    invitation_id   uuid NOT NULL UNIQUE REFERENCES invitations (id) ON DELETE CASCADE,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    survey_id       uuid NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    -- The survey version the invitation was created with, and so the one answered.
    survey_version  integer NOT NULL,
    -- The invitation's user_ref.
    submitted_by    text NOT NULL,
    status          text NOT NULL CHECK (status IN ('in_progress', 'completed')),
    -- Webhooks this response has caused so far; each carries the next number.
    sequence        integer NOT NULL DEFAULT 0,
    displayed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE INDEX responses_survey ON responses (survey_id, created_at);
CREATE INDEX responses_user ON responses (project_id, submitted_by);

-- Answers, saved as they are given; answering again replaces the answer.
CREATE TABLE answers (
    response_id  uuid NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
    question_id  text NOT NULL,
    value        jsonb NOT NULL,
    answered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (response_id, question_id)
);
