DROP INDEX CONCURRENTLY IF EXISTS triggers_project_paged;
