-- Sticky sampling: a survey rolls its sample per event (`event`, as before) or once per user
-- (`user`). The surveys table holds a row per survey, so checking the constant default of the
-- existing rows is quick.
ALTER TABLE surveys ADD COLUMN sample_by text NOT NULL DEFAULT 'event'
    CONSTRAINT surveys_sample_by CHECK (sample_by IN ('event', 'user'));
