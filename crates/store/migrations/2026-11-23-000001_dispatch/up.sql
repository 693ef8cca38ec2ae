-- Tenancy: organizations own projects and access tokens.
CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Organization access tokens (`oat_…`). Only the SHA-256 of the token is kept: tokens are
-- 32 random bytes, so a fast hash is a safe verifier and never caps throughput.
CREATE TABLE api_tokens (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        text NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_tokens_org ON api_tokens (org_id);

CREATE TABLE projects (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_org ON projects (org_id, created_at);

-- A survey's settings. Its questions live in survey_versions; `current_version` is the one
-- new invitations show.
CREATE TABLE surveys (
    id                          uuid PRIMARY KEY,
    org_id                      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id                  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name                        text NOT NULL,
    status                      text NOT NULL CHECK (status IN ('draft', 'live', 'paused', 'archived')),
    current_version             integer NOT NULL,
    -- Event keys (`trial_expired`, `custom:payment_failed`) the backend trigger subscribes to.
    trigger_events              text[] NOT NULL DEFAULT '{}',
    -- The trigger as the API shows it, in the order given.
    trigger_json                jsonb NOT NULL DEFAULT '{"events": []}',
    cooldown_seconds            bigint NOT NULL CHECK (cooldown_seconds >= 0),
    sample_rate                 double precision NOT NULL CHECK (sample_rate >= 0 AND sample_rate <= 1),
    invitation_lifetime_seconds bigint NOT NULL CHECK (invitation_lifetime_seconds > 0),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX surveys_project ON surveys (project_id, created_at);
-- Matching reads only Live surveys of one project whose trigger holds one key.
CREATE INDEX surveys_live_by_event ON surveys USING gin (trigger_events) WHERE status = 'live';

CREATE TABLE survey_versions (
    survey_id   uuid NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    version     integer NOT NULL,
    questions   jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (survey_id, version)
);

-- One row per fired event, whatever its path (dispatch, event, scheduled).
CREATE TABLE triggers (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    trigger_type    text NOT NULL CHECK (trigger_type IN ('dispatch', 'event', 'scheduled')),
    status          text NOT NULL CHECK (status IN ('queued', 'scheduled', 'processing', 'completed', 'failed', 'cancelled')),
    user_ref        text NOT NULL,
    event           jsonb NOT NULL,
    error           text,
    matched_count   integer NOT NULL DEFAULT 0,
    created_count   integer NOT NULL DEFAULT 0,
    cooldown_count  integer NOT NULL DEFAULT 0,
    sample_count    integer NOT NULL DEFAULT 0,
    errored_count   integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz
);
CREATE INDEX triggers_project ON triggers (project_id, created_at);

-- What became of each survey a trigger matched.
CREATE TABLE trigger_surveys (
    trigger_id      uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    survey_id       uuid NOT NULL,
    survey_version  integer NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('created', 'cooldown', 'sample', 'errored')),
    reason          text,
    invitation_id   uuid,
    PRIMARY KEY (trigger_id, survey_id)
);

-- Invitations. The id derives from (trigger, survey), so a redelivered envelope cannot create
-- a second one; only the SHA-256 of the magic-link token is kept.
CREATE TABLE invitations (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    survey_id       uuid NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    survey_version  integer NOT NULL,
    trigger_id      uuid NOT NULL,
    user_ref        text NOT NULL,
    token_hash      bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    UNIQUE (trigger_id, survey_id)
);
CREATE INDEX invitations_user ON invitations (project_id, user_ref);
CREATE INDEX invitations_survey ON invitations (survey_id, created_at);

-- The last invitation per (survey, user). Claimed by one atomic upsert so concurrent
-- dispatches cannot both pass an open window.
CREATE TABLE cooldowns (
    survey_id        uuid NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    user_ref         text NOT NULL,
    last_invited_at  timestamptz NOT NULL,
    PRIMARY KEY (survey_id, user_ref)
);

-- Envelopes a consumer has handled, written in the same transaction as the work.
CREATE TABLE processed_envelopes (
    consumer      text NOT NULL,
    envelope_id   uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, envelope_id)
);
CREATE INDEX processed_envelopes_age ON processed_envelopes (processed_at);

-- Envelopes committed with the work that emits them, published afterwards and then deleted.
-- A crash between commit and publish leaves the row here for the relay to publish.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    envelope_id  uuid NOT NULL,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    body         bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
