-- One project's triggers page by (created_at, id) (GET /api/v1/triggers?project_id=…).
-- Built CONCURRENTLY, alone in its migration.
CREATE INDEX CONCURRENTLY IF NOT EXISTS triggers_project_paged
    ON triggers (project_id, created_at, id);
