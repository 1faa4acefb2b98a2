-- Bearer tokens of the assistants' HTTP door (only the SHA-256 of each token is kept) and per-minute write counts.
CREATE TABLE IF NOT EXISTS mcp_tokens (
    name text PRIMARY KEY,
    scope text NOT NULL CHECK (scope IN ('read', 'write')),
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at timestamptz
);

CREATE TABLE IF NOT EXISTS mcp_write_counts (
    token_name text NOT NULL,
    window_start timestamptz NOT NULL,
    writes integer NOT NULL,
    PRIMARY KEY (token_name, window_start)
);
