-- The magic-link token sealed under the deployment's key (its SHA-256 stays the lookup key),
-- so the in-app widget can hand a user's pending links back to them.
ALTER TABLE invitations ADD COLUMN token_sealed bytea;

-- A project's publishable key (`pk_…`, shown in the browser: not a secret) and the origins
-- the in-app widget may call from.
ALTER TABLE projects
    ADD COLUMN publishable_key text UNIQUE,
    ADD COLUMN allowed_origins text[] NOT NULL DEFAULT '{}';
