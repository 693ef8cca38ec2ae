CREATE INDEX CONCURRENTLY IF NOT EXISTS responses_survey ON responses (survey_id, created_at);
