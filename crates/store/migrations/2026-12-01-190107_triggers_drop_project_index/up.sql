-- Covered by triggers_project_paged, whose columns begin with its own.
DROP INDEX CONCURRENTLY IF EXISTS triggers_project;
