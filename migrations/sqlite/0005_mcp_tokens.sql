-- Bearer tokens of the assistants' HTTP door (only the SHA-256 of each token is kept) and per-minute write counts.
CREATE TABLE IF NOT EXISTS mcp_tokens (
    name TEXT PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);

CREATE TABLE IF NOT EXISTS mcp_write_counts (
    token_name TEXT NOT NULL,
    window_start TEXT NOT NULL,
    writes INTEGER NOT NULL,
    PRIMARY KEY (token_name, window_start)
);
