-- Priority, tags, stored AI analysis, Notion bookkeeping, supersession, soft delete; run history; sync state; job slots.
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'decision_vault'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%type%' LOOP
        EXECUTE format('ALTER TABLE decision_vault DROP CONSTRAINT %I', c.conname);
    END LOOP;
END $$;
ALTER TABLE decision_vault ADD CONSTRAINT decision_vault_type_check
    CHECK (type IN ('strategy', 'technical', 'architecture', 'process', 'security', 'ethical', 'product', 'other'));

ALTER TABLE decision_vault
    ADD COLUMN IF NOT EXISTS priority text CHECK (priority IS NULL OR priority IN ('P0', 'P1', 'P2')),
    ADD COLUMN IF NOT EXISTS tags jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN IF NOT EXISTS type_source text NOT NULL DEFAULT 'person',
    ADD COLUMN IF NOT EXISTS priority_source text,
    ADD COLUMN IF NOT EXISTS ai_analysis jsonb,
    ADD COLUMN IF NOT EXISTS ai_hash text,
    ADD COLUMN IF NOT EXISTS notion_page_id text,
    ADD COLUMN IF NOT EXISTS notion_sync_hash text,
    ADD COLUMN IF NOT EXISTS notion_last_edited timestamptz,
    ADD COLUMN IF NOT EXISTS notion_attempted_at timestamptz,
    ADD COLUMN IF NOT EXISTS superseded_by uuid REFERENCES decision_vault (id),
    ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
-- The original columns were nullable: fill gaps from the other timestamp (or the decision date) before NOT NULL.
-- Triggers are off for this one statement so the backfill does not stamp every row with now().
ALTER TABLE decision_vault DISABLE TRIGGER USER;
UPDATE decision_vault
    SET created_at = COALESCE(created_at, updated_at, date::timestamp AT TIME ZONE 'UTC'),
        updated_at = COALESCE(updated_at, created_at, date::timestamp AT TIME ZONE 'UTC')
    WHERE created_at IS NULL OR updated_at IS NULL;
ALTER TABLE decision_vault ENABLE TRIGGER USER;
ALTER TABLE decision_vault ALTER COLUMN created_at SET NOT NULL, ALTER COLUMN updated_at SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS decision_vault_notion_page_id ON decision_vault (notion_page_id)
    WHERE notion_page_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS decision_vault_updated_at ON decision_vault (updated_at);

-- Storage sets updated_at itself (a restore keeps the backup's value); the trigger only fills it when left unchanged.
CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS trigger AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at = now();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

ALTER TABLE agent_activity
    ADD COLUMN IF NOT EXISTS started_at timestamptz,
    ADD COLUMN IF NOT EXISTS finished_at timestamptz,
    ADD COLUMN IF NOT EXISTS duration_s double precision,
    ADD COLUMN IF NOT EXISTS host text;
CREATE INDEX IF NOT EXISTS agent_activity_created_at ON agent_activity (created_at);

CREATE TABLE IF NOT EXISTS sync_state (
    key text PRIMARY KEY,
    value text,
    updated_at timestamptz
);

CREATE TABLE IF NOT EXISTS job_slots (
    job text NOT NULL,
    slot timestamptz NOT NULL,
    host text,
    claimed_at timestamptz,
    PRIMARY KEY (job, slot)
);
