-- An organization's triggers page by (created_at, id) (GET /api/v1/triggers). Built
-- CONCURRENTLY, alone in its migration.
CREATE INDEX CONCURRENTLY IF NOT EXISTS triggers_org_paged ON triggers (org_id, created_at, id);
