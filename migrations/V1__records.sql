-- V1__records.sql — seed 000: "KNN Performance Issues & Solutions" (music-records app,
-- fuzzy search on artist/name with pg_trgm, KNN `<->`, hot-tenant slice, 5.1k TPS target).
--
-- What this migration creates (what the app itself has):
--   * extension pg_trgm (the `<->` distance operator and the trigram opclasses);
--   * records.records: one row per record in a user's collection, multi-tenant by user_id;
--     search_norm = lower("artist name") with whitespace collapsed, kept as a STORED generated
--     column so every writer (app, loaders, pgx datasets) gets the same normalisation;
--   * a plain btree on user_id (tenant filter) — what such an app has from day one;
--   * records_hot.records_hot: a copy of the hot tenant's rows (tenant
--     0dc268d0-a86f-4e12-8d10-9db0f1b735e0), same ids as in records.records;
--   * records.search_records_fuzzy_ids(p_user, p_query, p_limit): KNN search returning ids;
--     for the hot tenant it reads the hot slice first and falls back to records.records
--     only when the slice has no rows for the query (slice empty / not yet populated).
--
-- Deliberately NOT here (they are experiment variants, see experiments/):
--   * every trigram index: GiST (gist_trgm_ops) for KNN, GIN (gin_trgm_ops, fastupdate=off)
--     on artist / name, the per-tenant partial GiST (WHERE user_id = hot tenant),
--     indexes on records_hot.records_hot.search_norm;
--   * work_mem / prewarm settings.
-- Without those indexes the function is correct but seq-scans and sorts: that is the
-- baseline the experiments compare against.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE SCHEMA IF NOT EXISTS records;

CREATE TABLE records.records (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        uuid        NOT NULL,            -- tenant (collection owner)
    artist         text        NOT NULL,
    name           text        NOT NULL,            -- album / release title
    format         text        NOT NULL DEFAULT 'vinyl'
                   CHECK (format IN ('vinyl', 'cd', 'cassette', 'digital', 'other')),
    label          text,
    catalog_number text,
    release_year   smallint    CHECK (release_year BETWEEN 1877 AND 2100),
    genre          text,
    condition      text        CHECK (condition IN ('M', 'NM', 'VG+', 'VG', 'G+', 'G', 'F', 'P')),
    notes          text,
    search_norm    text        GENERATED ALWAYS AS (
                       lower(btrim(regexp_replace(artist || ' ' || name, '\s+', ' ', 'g')))
                   ) STORED,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN records.records.search_norm IS
    'lower("artist name"), whitespace collapsed, no unaccent; searched with pg_trgm (<->, %)';

-- Tenant filter: every query of the app is scoped to one user.
CREATE INDEX records_user_id_idx ON records.records (user_id);

-- Hot-tenant slice: the rows of the one tenant that dominates traffic, copied out so that
-- its searches touch a small table. Same ids as records.records (no identity here).
CREATE SCHEMA IF NOT EXISTS records_hot;

CREATE TABLE records_hot.records_hot (
    id             bigint      PRIMARY KEY,
    user_id        uuid        NOT NULL
                   CHECK (user_id = '0dc268d0-a86f-4e12-8d10-9db0f1b735e0'::uuid),
    artist         text        NOT NULL,
    name           text        NOT NULL,
    format         text        NOT NULL DEFAULT 'vinyl',
    label          text,
    catalog_number text,
    release_year   smallint,
    genre          text,
    condition      text,
    notes          text,
    search_norm    text        GENERATED ALWAYS AS (
                       lower(btrim(regexp_replace(artist || ' ' || name, '\s+', ' ', 'g')))
                   ) STORED,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE records_hot.records_hot IS
    'copy of records.records rows of hot tenant 0dc268d0-a86f-4e12-8d10-9db0f1b735e0 (same ids)';

-- KNN fuzzy search: ids of the p_limit rows of p_user nearest to p_query by trigram distance.
-- Hot tenant: hot slice first; fall back to the main table only if the slice returned nothing.
CREATE FUNCTION records.search_records_fuzzy_ids(p_user uuid, p_query text, p_limit int DEFAULT 50)
RETURNS SETOF bigint
LANGUAGE plpgsql
STABLE
AS $fn$
DECLARE
    v_found bigint := 0;
BEGIN
    IF p_user = '0dc268d0-a86f-4e12-8d10-9db0f1b735e0'::uuid THEN
        RETURN QUERY
            SELECT h.id
            FROM records_hot.records_hot AS h
            ORDER BY h.search_norm <-> p_query
            LIMIT p_limit;
        GET DIAGNOSTICS v_found = ROW_COUNT;
        IF v_found > 0 THEN
            RETURN;
        END IF;
    END IF;

    RETURN QUERY
        SELECT r.id
        FROM records.records AS r
        WHERE r.user_id = p_user
        ORDER BY r.search_norm <-> p_query
        LIMIT p_limit;
END
$fn$;

COMMENT ON FUNCTION records.search_records_fuzzy_ids(uuid, text, int) IS
    'KNN trigram search (ORDER BY search_norm <-> p_query LIMIT p_limit); hot tenant served from records_hot.records_hot first';
