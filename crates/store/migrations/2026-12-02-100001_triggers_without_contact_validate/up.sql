ALTER TABLE triggers VALIDATE CONSTRAINT triggers_reason_known;
