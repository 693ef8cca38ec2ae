-- The groups a user belongs to (a plan, a company size, a team), set through users/upsert and
-- carried in the webhooks about the user. A constant default changes only the catalogue.
ALTER TABLE users ADD COLUMN groups text[] NOT NULL DEFAULT '{}';
