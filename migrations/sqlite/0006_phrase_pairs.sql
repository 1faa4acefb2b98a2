-- PostgreSQL's migration 0006 indexes adjacent word pairs for phrase search. SQLite's FTS5 index already holds
-- word positions and needs nothing: this migration keeps both dialects at the same schema version, so a backup
-- taken from either restores into the other.
SELECT 1;
