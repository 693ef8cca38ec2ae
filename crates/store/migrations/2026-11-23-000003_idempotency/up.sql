-- Idempotency-Key records for the POST endpoints, per organization, kept 24 hours.
CREATE TABLE idempotency_keys (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key              text NOT NULL,
    -- SHA-256 of method, path and body: the same key with another request is refused.
    request_hash     bytea NOT NULL,
    -- `in_flight` while the first request runs (or its dispatch still completes); `done` once
    -- its answer is stored.
    state            text NOT NULL CHECK (state IN ('in_flight', 'done')),
    response_status  integer,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (org_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
