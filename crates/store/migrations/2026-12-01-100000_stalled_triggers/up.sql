-- When the stalled-trigger sweep last put a trigger's envelope on the bus again.
ALTER TABLE triggers ADD COLUMN redriven_at timestamptz;
