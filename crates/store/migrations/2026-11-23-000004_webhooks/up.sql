-- Webhook subscriptions of a project.
CREATE TABLE webhook_subscriptions (
    id                          uuid PRIMARY KEY,
    org_id                      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id                  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url                         text NOT NULL,
    description                 text NOT NULL DEFAULT '',
    -- Event types delivered; empty means all.
    event_types                 text[] NOT NULL DEFAULT '{}',
    status                      text NOT NULL CHECK (status IN ('pending_verification', 'active', 'disabled')),
    disabled_reason             text,
    retry_policy                jsonb NOT NULL,
    timeout_ms                  integer NOT NULL CHECK (timeout_ms BETWEEN 1000 AND 30000),
    payload_version             integer NOT NULL DEFAULT 1,
    -- The signing secret, encrypted with the deployment's key (signing needs the plaintext).
    secret_encrypted            bytea NOT NULL,
    -- After a rotation the previous secret keeps signing until it expires.
    previous_secret_encrypted   bytea,
    previous_secret_expires_at  timestamptz,
    last_success_at             timestamptz,
    verified_at                 timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_project ON webhook_subscriptions (project_id, created_at);

-- One message per event, shared by every subscription; its id is the `webhook-id` header,
-- the same on every retry. The body is encrypted: it can carry magic links and user data.
CREATE TABLE webhook_messages (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    event_type      text NOT NULL,
    version         integer NOT NULL,
    body_encrypted  bytea NOT NULL,
    occurred_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_messages_project ON webhook_messages (project_id, created_at);

-- A message to one subscription. `next_attempt_at` doubles as a lease: an attempt in flight
-- pushes it past its own timeout, so a crashed attempt is retried and a live one is not.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    message_id       uuid NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    subscription_id  uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    status           text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, subscription_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, created_at);

-- Every attempt, kept for the API and for operators.
CREATE TABLE webhook_attempts (
    id               bigserial PRIMARY KEY,
    delivery_id      uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    message_id       uuid NOT NULL,
    subscription_id  uuid NOT NULL,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    status_code      integer,
    duration_ms      integer NOT NULL,
    response_body    text,
    error            text
);
CREATE INDEX webhook_attempts_subscription ON webhook_attempts (subscription_id, id);
CREATE INDEX webhook_attempts_message ON webhook_attempts (message_id, id);
CREATE INDEX webhook_attempts_age ON webhook_attempts (attempted_at);
