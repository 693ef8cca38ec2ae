DROP INDEX api_tokens_parent;
ALTER TABLE api_tokens DROP COLUMN parent_id;
