-- Who last disabled or enabled a key, and when (the reseller API's disable/enable record by/at).
ALTER TABLE keys ADD COLUMN status_changed_at INTEGER;
ALTER TABLE keys ADD COLUMN status_changed_by TEXT;
