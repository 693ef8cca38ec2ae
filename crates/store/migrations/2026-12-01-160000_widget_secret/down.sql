ALTER TABLE projects DROP COLUMN widget_secret_sealed, DROP COLUMN widget_previous_secret_sealed, DROP COLUMN widget_previous_secret_expires_at;
