-- Covered by responses_survey_paged, whose columns begin with its own.
DROP INDEX CONCURRENTLY IF EXISTS responses_survey;
