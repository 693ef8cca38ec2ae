-- Validation has nothing to undo.
SELECT 1;
