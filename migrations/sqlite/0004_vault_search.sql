-- Full-text search over text, comment, tags and AI summary; earlier versions of decisions; links between them.
-- The index reads its text through a view (the AI summary sits inside ai_analysis) and is kept current by triggers.
CREATE VIEW decision_search_source AS
    SELECT rowid AS rid, decision, coalesce(comment, '') AS comment, tags,
           coalesce(json_extract(ai_analysis, '$.summary'), '') AS summary
    FROM decision_vault;

CREATE VIRTUAL TABLE decision_search USING fts5(
    decision, comment, tags, summary,
    content = 'decision_search_source', content_rowid = 'rid',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER decision_search_insert AFTER INSERT ON decision_vault BEGIN
    INSERT INTO decision_search (rowid, decision, comment, tags, summary)
    VALUES (new.rowid, new.decision, coalesce(new.comment, ''), new.tags,
            coalesce(json_extract(new.ai_analysis, '$.summary'), ''));
END;

CREATE TRIGGER decision_search_delete AFTER DELETE ON decision_vault BEGIN
    INSERT INTO decision_search (decision_search, rowid, decision, comment, tags, summary)
    VALUES ('delete', old.rowid, old.decision, coalesce(old.comment, ''), old.tags,
            coalesce(json_extract(old.ai_analysis, '$.summary'), ''));
END;

CREATE TRIGGER decision_search_update AFTER UPDATE OF decision, comment, tags, ai_analysis ON decision_vault
WHEN old.decision IS NOT new.decision OR old.comment IS NOT new.comment OR old.tags IS NOT new.tags
     OR old.ai_analysis IS NOT new.ai_analysis
BEGIN
    INSERT INTO decision_search (decision_search, rowid, decision, comment, tags, summary)
    VALUES ('delete', old.rowid, old.decision, coalesce(old.comment, ''), old.tags,
            coalesce(json_extract(old.ai_analysis, '$.summary'), ''));
    INSERT INTO decision_search (rowid, decision, comment, tags, summary)
    VALUES (new.rowid, new.decision, coalesce(new.comment, ''), new.tags,
            coalesce(json_extract(new.ai_analysis, '$.summary'), ''));
END;

INSERT INTO decision_search (decision_search) VALUES ('rebuild');

-- How many decisions hold each word, counted now and again daily: FTS5 counts it by reading the word's whole
-- match list, far too slow to ask while adding a decision. The duplicate and similarity lookups read it to
-- find a text's rarest words; a word newer than the count counts as rarest, which it usually is.
CREATE VIRTUAL TABLE decision_search_terms USING fts5vocab(decision_search, row);
CREATE TABLE decision_term_stats (term TEXT PRIMARY KEY, docs INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO decision_term_stats SELECT term, doc FROM decision_search_terms;

CREATE INDEX IF NOT EXISTS decision_vault_superseded_by ON decision_vault (superseded_by) WHERE superseded_by IS NOT NULL;

CREATE TABLE IF NOT EXISTS decision_history (
    id TEXT PRIMARY KEY,
    decision_id TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    source TEXT NOT NULL,
    reason TEXT,
    changed TEXT NOT NULL DEFAULT '[]',
    previous TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_history_decision ON decision_history (decision_id, changed_at);

CREATE TABLE IF NOT EXISTS decision_links (
    id TEXT PRIMARY KEY,
    from_id TEXT NOT NULL REFERENCES decision_vault (id) ON DELETE CASCADE,
    to_id TEXT NOT NULL REFERENCES decision_vault (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('depends_on', 'relates_to', 'conflicts_with', 'refines')),
    source TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (from_id, to_id, kind)
);
CREATE INDEX IF NOT EXISTS decision_links_to ON decision_links (to_id);
