DROP INDEX triggers_unfinished;
ALTER TABLE triggers DROP COLUMN redriven_at;
