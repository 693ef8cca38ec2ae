ALTER TABLE surveys DROP COLUMN sample_by;
