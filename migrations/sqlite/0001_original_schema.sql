-- The original system's two tables, so every later migration starts from the same shape.
CREATE TABLE IF NOT EXISTS decision_vault (
    id TEXT PRIMARY KEY,
    decision TEXT NOT NULL,
    date TEXT NOT NULL DEFAULT (date('now')),
    type TEXT NOT NULL CHECK (type IN ('strategy', 'technical', 'ethical', 'architecture', 'process', 'security', 'product', 'other')),
    active INTEGER NOT NULL DEFAULT 1,
    comment TEXT,
    synced INTEGER NOT NULL DEFAULT 0,
    synced_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS agent_activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_name TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT,
    status TEXT DEFAULT 'completed',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
