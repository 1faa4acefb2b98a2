-- Deleting a decision checks that no row's superseded_by still points at it; without an index each check
-- reads the whole table, so restore --prune of many rows took quadratic time.
CREATE INDEX IF NOT EXISTS decision_vault_superseded_by ON decision_vault (superseded_by);
