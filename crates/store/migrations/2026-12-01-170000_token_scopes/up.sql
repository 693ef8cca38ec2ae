-- What a token may do (send, read, admin) and until when. Tokens made before keep every
-- permission they had and never expire.
ALTER TABLE api_tokens
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{admin}',
    ADD COLUMN expires_at timestamptz;
