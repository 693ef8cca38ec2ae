CREATE INDEX CONCURRENTLY IF NOT EXISTS triggers_project ON triggers (project_id, created_at);
