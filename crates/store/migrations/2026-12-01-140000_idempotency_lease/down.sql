ALTER TABLE idempotency_keys DROP COLUMN owner, DROP COLUMN lease_until;
