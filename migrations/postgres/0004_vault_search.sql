-- Full-text search over text, comment, tags and AI summary; earlier versions of decisions; links between them.
-- One text search configuration for indexing and querying: english stemming, accents folded when the server has
-- the unaccent extension (a server without it, or a role that may not create it, searches accents as written).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'angles_search') THEN
        CREATE TEXT SEARCH CONFIGURATION angles_search (COPY = english);
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS unaccent;
        ALTER TEXT SEARCH CONFIGURATION angles_search
            ALTER MAPPING FOR hword, hword_part, word WITH unaccent, english_stem;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'unaccent is not available (%): search will not fold accents', SQLERRM;
    END;
END $$;

-- Stored and generated: every write keeps it current, and adding it indexes the rows already there.
ALTER TABLE decision_vault ADD COLUMN IF NOT EXISTS search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('angles_search', coalesce(decision, '')), 'A')
    || setweight(to_tsvector('angles_search', coalesce(tags::text, '')), 'B')
    || setweight(to_tsvector('angles_search', coalesce(comment, '')), 'C')
    || setweight(to_tsvector('angles_search', coalesce(ai_analysis ->> 'summary', '')), 'D')
) STORED;
CREATE INDEX IF NOT EXISTS decision_vault_search ON decision_vault USING gin (search_vector);
CREATE INDEX IF NOT EXISTS decision_vault_superseded_by ON decision_vault (superseded_by)
    WHERE superseded_by IS NOT NULL;

CREATE TABLE IF NOT EXISTS decision_history (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    decision_id uuid NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    source text NOT NULL,
    reason text,
    changed jsonb NOT NULL DEFAULT '[]'::jsonb,
    previous jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_history_decision ON decision_history (decision_id, changed_at);

CREATE TABLE IF NOT EXISTS decision_links (
    id uuid PRIMARY KEY,
    from_id uuid NOT NULL REFERENCES decision_vault (id) ON DELETE CASCADE,
    to_id uuid NOT NULL REFERENCES decision_vault (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('depends_on', 'relates_to', 'conflicts_with', 'refines')),
    source text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (from_id, to_id, kind)
);
CREATE INDEX IF NOT EXISTS decision_links_to ON decision_links (to_id);
