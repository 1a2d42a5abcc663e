-- V5__features.sql — seed 004: "Feature Server Optimization Deep-Dive"
-- (online feature store: one lookup by hashkey in each of 30 tables per request,
-- pipelined + prepared, p50/p99 vs DynamoDB).
--
-- What this migration creates: schema features with 30 tables features.f01 .. features.f30 in
-- the seed's recommended narrow layout — hashkey bytea PRIMARY KEY (32-byte key), six
-- fixed-width real features, updated_at int (unix epoch seconds). The primary-key btree is
-- the only index: a lookup is Index Scan + one heap fetch.
--
-- Deliberately NOT here (experiment variants, seed 004 §"Advanced"):
--   covering indexes (hashkey) INCLUDE (features...) for Index Only Scans, wide-row layouts
--   (jsonb / text / timestamptz columns) for the narrow-vs-wide comparison, fillfactor,
--   client-side choices (prepared statements, pipelining), which pgx measures, not the schema.

CREATE SCHEMA IF NOT EXISTS features;

DO $do$
DECLARE
    t text;
BEGIN
    FOR i IN 1..30 LOOP
        t := 'f' || to_char(i, 'FM00');
        EXECUTE format(
            'CREATE TABLE %I.%I (
                 hashkey    bytea   NOT NULL,
                 feature1   real,
                 feature2   real,
                 feature3   real,
                 feature4   real,
                 feature5   real,
                 feature6   real,
                 updated_at integer NOT NULL,
                 CONSTRAINT %I PRIMARY KEY (hashkey),
                 CONSTRAINT %I CHECK (octet_length(hashkey) = 32)
             )',
            'features', t, t || '_pkey', t || '_hashkey_len');
        EXECUTE format('COMMENT ON TABLE %I.%I IS %L',
            'features', t, 'feature group ' || i || ' (narrow layout, seed 004)');
    END LOOP;
END
$do$;
