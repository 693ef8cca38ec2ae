ALTER TABLE triggers DROP COLUMN redriven_at;
