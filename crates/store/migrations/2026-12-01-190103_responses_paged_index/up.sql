-- A survey's responses page by (created_at, id). Built CONCURRENTLY, alone in its migration.
CREATE INDEX CONCURRENTLY IF NOT EXISTS responses_survey_paged
    ON responses (survey_id, created_at, id);
