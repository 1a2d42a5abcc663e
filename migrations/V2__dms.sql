-- V2__dms.sql — seed 001: "DMS Reference Table Performance Tuning Explorations"
-- (Ed-Fi Data Management Service: dms.document / dms.alias / dms.reference, 20M references,
-- 16 hash partitions, InsertReferences DELETE + re-insert).
--
-- Modelled on the Ed-Fi DMS deploy scripts 0001_Create_Document_Table.sql,
-- 0002_Create_Alias_Table.sql and 0003_Create_Reference_Table.sql, with the columns the seed
-- uses (ReferencedDocumentId / ReferencedDocumentPartitionKey, NULL when reference validation
-- is off). All identifiers are lowercase and unquoted (PostgreSQL folds the upstream
-- MixedCase names to exactly these).
--
-- Partition keys are 0..15 (DMS: last byte of the document uuid / referential id mod 16).
-- Every table is PARTITION BY HASH on its key, MODULUS 16, partitions <table>_00 .. _15
-- (remainder = suffix). Note, as upstream: hashing 16 small integers into 16 buckets is not
-- a bijection, so some partitions hold several keys and some none.
--
-- dms.reference carries exactly the seed's "current index configuration":
--   ux_reference_parentdocumentid     (parentdocumentpartitionkey, parentdocumentid)
--   ux_reference_referenceddocumentid (referenceddocumentpartitionkey, referenceddocumentid)
-- plus fk_reference_parentdocument (seed 3.4 drops it as an experiment).
-- Upstream also declares PRIMARY KEY (parentdocumentpartitionkey, id); it is deliberately left
-- out so the table has the seed's two indexes and nothing else (a btree on id would also make
-- the BRIN-on-id question moot); an experiment can add it as a variant.
--
-- Deliberately NOT here (experiment variants, seed 001 explorations 1, 2, 5, 6):
--   covering INCLUDE index, partial indexes, BRIN indexes, fillfactor, other partition counts,
--   non-partitioned copies, autovacuum storage parameters, the referenced-document FK
--   (upstream adds it later, only when reference validation is on), pgstattuple.

CREATE SCHEMA IF NOT EXISTS dms;

-- ---------------------------------------------------------------------------------------
-- dms.document
-- ---------------------------------------------------------------------------------------
CREATE TABLE dms.document (
    id                   bigint       GENERATED ALWAYS AS IDENTITY,
    documentpartitionkey smallint     NOT NULL,
    documentuuid         uuid         NOT NULL,
    resourcename         varchar(256) NOT NULL,
    resourceversion      varchar(64)  NOT NULL,
    isdescriptor         boolean      NOT NULL,
    projectname          varchar(256) NOT NULL,
    edfidoc              jsonb        NOT NULL,
    securityelements     jsonb        NOT NULL,
    createdat            timestamp    NOT NULL DEFAULT now(),
    lastmodifiedat       timestamp    NOT NULL DEFAULT now(),
    lastmodifiedtraceid  varchar(128) NOT NULL,
    PRIMARY KEY (documentpartitionkey, id),
    CHECK (documentpartitionkey BETWEEN 0 AND 15)
) PARTITION BY HASH (documentpartitionkey);

DO $do$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE %I.%I PARTITION OF dms.document FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            'dms', 'document_' || to_char(i, 'FM00'), i);
    END LOOP;
END
$do$;

-- GET/UPDATE/DELETE by uuid, uuid uniqueness.
CREATE UNIQUE INDEX ux_document_documentuuid ON dms.document (documentpartitionkey, documentuuid);

-- ---------------------------------------------------------------------------------------
-- dms.alias: referential id (identity of a resource) -> document; one per document
-- (two for subclass documents upstream).
-- ---------------------------------------------------------------------------------------
CREATE TABLE dms.alias (
    id                      bigint   GENERATED ALWAYS AS IDENTITY,
    referentialpartitionkey smallint NOT NULL,
    referentialid           uuid     NOT NULL,
    documentid              bigint   NOT NULL,
    documentpartitionkey    smallint NOT NULL,
    PRIMARY KEY (referentialpartitionkey, id),
    CHECK (referentialpartitionkey BETWEEN 0 AND 15)
) PARTITION BY HASH (referentialpartitionkey);

DO $do$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE %I.%I PARTITION OF dms.alias FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            'dms', 'alias_' || to_char(i, 'FM00'), i);
    END LOOP;
END
$do$;

-- Referential id uniqueness; resolves references at insert time.
CREATE UNIQUE INDEX ux_alias_referentialid ON dms.alias (referentialpartitionkey, referentialid);

ALTER TABLE dms.alias
    ADD CONSTRAINT fk_alias_document FOREIGN KEY (documentpartitionkey, documentid)
    REFERENCES dms.document (documentpartitionkey, id) ON DELETE CASCADE;

CREATE INDEX ix_alias_documentpartitionkey_documentid ON dms.alias (documentpartitionkey, documentid);

-- ---------------------------------------------------------------------------------------
-- dms.reference: one row per reference from a parent document to another resource.
-- referenceddocument* is NULL when reference validation is off (unresolved reference).
-- ---------------------------------------------------------------------------------------
CREATE TABLE dms.reference (
    id                             bigint   GENERATED ALWAYS AS IDENTITY,
    parentdocumentid               bigint   NOT NULL,
    parentdocumentpartitionkey     smallint NOT NULL,
    referentialid                  uuid     NOT NULL,
    referentialpartitionkey        smallint NOT NULL,
    referenceddocumentid           bigint   NULL,
    referenceddocumentpartitionkey smallint NULL,
    CHECK (parentdocumentpartitionkey BETWEEN 0 AND 15)
) PARTITION BY HASH (parentdocumentpartitionkey);

DO $do$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE %I.%I PARTITION OF dms.reference FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            'dms', 'reference_' || to_char(i, 'FM00'), i);
    END LOOP;
END
$do$;

-- Lookup support for DELETE/UPDATE by parent (the InsertReferences DELETE).
CREATE INDEX ux_reference_parentdocumentid
    ON dms.reference (parentdocumentpartitionkey, parentdocumentid);

-- Lookup support for DELETE failure due to existing references (cross-partition).
CREATE INDEX ux_reference_referenceddocumentid
    ON dms.reference (referenceddocumentpartitionkey, referenceddocumentid);

ALTER TABLE dms.reference
    ADD CONSTRAINT fk_reference_parentdocument FOREIGN KEY (parentdocumentpartitionkey, parentdocumentid)
    REFERENCES dms.document (documentpartitionkey, id) ON DELETE CASCADE;
