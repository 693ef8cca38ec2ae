CREATE INDEX webhook_subscriptions_project ON webhook_subscriptions (project_id, created_at);
DROP INDEX webhook_subscriptions_project_paged;
CREATE INDEX surveys_project ON surveys (project_id, created_at);
DROP INDEX surveys_project_paged;
CREATE INDEX projects_org ON projects (org_id, created_at);
DROP INDEX projects_org_paged;
CREATE INDEX api_tokens_org ON api_tokens (org_id);
DROP INDEX api_tokens_org_paged;
