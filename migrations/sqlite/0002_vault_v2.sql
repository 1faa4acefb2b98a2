-- Priority, tags, stored AI analysis, Notion bookkeeping, supersession, soft delete; run history; sync state; job slots.
ALTER TABLE decision_vault ADD COLUMN priority TEXT CHECK (priority IS NULL OR priority IN ('P0', 'P1', 'P2'));
ALTER TABLE decision_vault ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE decision_vault ADD COLUMN type_source TEXT NOT NULL DEFAULT 'person';
ALTER TABLE decision_vault ADD COLUMN priority_source TEXT;
ALTER TABLE decision_vault ADD COLUMN ai_analysis TEXT;
ALTER TABLE decision_vault ADD COLUMN ai_hash TEXT;
ALTER TABLE decision_vault ADD COLUMN notion_page_id TEXT;
ALTER TABLE decision_vault ADD COLUMN notion_sync_hash TEXT;
ALTER TABLE decision_vault ADD COLUMN notion_last_edited TEXT;
ALTER TABLE decision_vault ADD COLUMN notion_attempted_at TEXT;
ALTER TABLE decision_vault ADD COLUMN superseded_by TEXT REFERENCES decision_vault (id);
ALTER TABLE decision_vault ADD COLUMN deleted_at TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS decision_vault_notion_page_id ON decision_vault (notion_page_id) WHERE notion_page_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS decision_vault_updated_at ON decision_vault (updated_at);

ALTER TABLE agent_activity ADD COLUMN started_at TEXT;
ALTER TABLE agent_activity ADD COLUMN finished_at TEXT;
ALTER TABLE agent_activity ADD COLUMN duration_s REAL;
ALTER TABLE agent_activity ADD COLUMN host TEXT;
CREATE INDEX IF NOT EXISTS agent_activity_created_at ON agent_activity (created_at);

CREATE TABLE IF NOT EXISTS sync_state (
    key TEXT PRIMARY KEY,
    value TEXT,
    updated_at TEXT
);

CREATE TABLE IF NOT EXISTS job_slots (
    job TEXT NOT NULL,
    slot TEXT NOT NULL,
    host TEXT,
    claimed_at TEXT,
    PRIMARY KEY (job, slot)
);
