DROP INDEX CONCURRENTLY IF EXISTS responses_survey_paged;
