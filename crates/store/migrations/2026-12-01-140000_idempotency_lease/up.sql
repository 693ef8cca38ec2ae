-- A request that claims an Idempotency-Key holds it on a short lease, renewed while it runs,
-- instead of for the key's whole 24 hours: when the request dies (a crash, a shutdown during
-- a late wait) the lease lapses and a retry takes the key over and runs afresh.
-- `owner` is the claim's random token: a request whose lease was taken over can neither renew
-- it, nor store its answer, nor release it. Both are NULL once the answer is stored.
-- Rows in flight from before this migration have no lease, so they count as lapsed.
ALTER TABLE idempotency_keys
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN owner uuid;
