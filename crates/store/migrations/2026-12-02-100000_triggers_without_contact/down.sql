-- The previous schema cannot hold a trigger without a user: those are deleted (they created
-- nothing, and finished long ago or never will).
ALTER TABLE triggers DROP CONSTRAINT IF EXISTS triggers_reason_known;
DELETE FROM triggers WHERE user_ref IS NULL;
ALTER TABLE triggers
    ALTER COLUMN user_ref SET NOT NULL,
    DROP COLUMN reason;
