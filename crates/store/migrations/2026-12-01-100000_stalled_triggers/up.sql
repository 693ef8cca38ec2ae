-- When the stalled-trigger sweep last put a trigger's envelope on the bus again.
ALTER TABLE triggers ADD COLUMN redriven_at timestamptz;
-- The sweep looks only at unfinished triggers, a small part of the table.
CREATE INDEX triggers_unfinished ON triggers (created_at) WHERE status IN ('queued', 'processing');
