-- Word pairs: every two adjacent words of a decision's search text, in a GIN index, so a "quoted phrase" is
-- found through the index (as Elasticsearch's index_phrases does) instead of by reading the word positions of
-- every decision that holds its words somewhere. The pairs are derived from the stored search_vector, so a pair
-- is indexed exactly when the phrase operator (<->) matches those two words there.
-- A decision whose pairs would be too large for a tsvector, or that has a pair of very long words, gets the one
-- lexeme 'incomplete' instead: a phrase search always checks such decisions itself.
CREATE OR REPLACE FUNCTION angles_word_pairs(v tsvector) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 1000 AS $$
    WITH w AS MATERIALIZED (SELECT u.lexeme, p FROM unnest(v) u, unnest(u.positions) p),
    pairs AS (SELECT a.lexeme || ' ' || b.lexeme AS pair FROM w a JOIN w b ON b.p = a.p + 1)
    SELECT CASE
        WHEN count(*) = 0 THEN ''::tsvector
        WHEN max(octet_length(pair)) > 255 OR sum(octet_length(pair)) > 262144 THEN 'incomplete'::tsvector
        ELSE array_to_tsvector(array_agg(pair))
    END
    FROM pairs
$$;

CREATE INDEX IF NOT EXISTS decision_vault_pairs ON decision_vault USING gin (angles_word_pairs(search_vector));

-- A write's new index entries wait in a pending list that every index scan reads in full and that the write
-- which fills it merges into the index. At PostgreSQL's default of 4 MB that merge made one add in about 3,000
-- take 0.74 s on a vault of 1,000,000 decisions; at 512 kB the longest add measured 0.16 s (three of 1,500
-- over 50 ms), for bulk writes about 14% slower.
ALTER INDEX decision_vault_search SET (gin_pending_list_limit = 512);
ALTER INDEX decision_vault_pairs SET (gin_pending_list_limit = 512);
