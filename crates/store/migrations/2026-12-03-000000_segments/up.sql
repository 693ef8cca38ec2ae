-- Segments: a named condition over user fields per project, which surveys' conditions refer
-- to by id (`{"segment": "<id>"}`). A name is unique within its project. A segment a survey
-- refers to cannot be deleted (checked under the segment's row lock, which a survey's save
-- shares), so what a survey refers to is there.
CREATE TABLE segments (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    condition   jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT segments_name UNIQUE (project_id, name)
);
CREATE INDEX segments_project_created ON segments (project_id, created_at DESC, id DESC);
