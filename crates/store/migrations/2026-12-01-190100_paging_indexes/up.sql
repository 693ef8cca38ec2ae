-- Every list reads newest first, by (created_at, id): a keyset page is one range of an
-- index on (parent, created_at, id), however many rows share a created_at. These tables hold
-- configuration (few rows per organization or project), so their indexes are rebuilt in
-- place, in one transaction.
CREATE INDEX api_tokens_org_paged ON api_tokens (org_id, created_at, id);
DROP INDEX api_tokens_org;
CREATE INDEX projects_org_paged ON projects (org_id, created_at, id);
DROP INDEX projects_org;
CREATE INDEX surveys_project_paged ON surveys (project_id, created_at, id);
DROP INDEX surveys_project;
CREATE INDEX webhook_subscriptions_project_paged ON webhook_subscriptions (project_id, created_at, id);
DROP INDEX webhook_subscriptions_project;
