-- V3__metastore.sql — seed 002: "Query Performance Optimizations for
-- MaterializeRecordBatchEvents" (gorm metastore of a Kafka-like log on S3: record batch
-- events are materialised into contiguous per-partition offset ranges).
--
-- What this migration creates: the tables as the gorm models declare them, with only what
-- gorm itself would emit — primary keys, the topic foreign keys, the CHECKs on
-- topic_partitions and the unique (topic_id, partition) a partition row needs.
-- Offsets must stay contiguous per (topic_id, partition):
--   record_batches_v2.start_offset = previous end_offset of that topic/partition.
--
-- Deliberately NOT here (experiment variants, seed 002 §1):
--   * idx_rbe_unprocessed_ordered on record_batch_events (topic_id, partition, processed,
--     created_at) and its partial form (... WHERE NOT processed);
--   * idx_topic_partition_lookup (topic_id, partition) — note the unique constraint below
--     already provides exactly that access path;
--   * any index on record_batches_v2 beyond its primary key (e.g. (topic_id, partition,
--     start_offset) for consumer reads);
--   * indexes on the foreign-key columns (gorm does not create them).

CREATE SCHEMA IF NOT EXISTS metastore;

CREATE TABLE metastore.topics (
    id         uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    name       varchar(255) NOT NULL,
    partitions integer      NOT NULL DEFAULT 1 CHECK (partitions > 0),
    created_at timestamptz  NOT NULL DEFAULT now(),
    updated_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT uni_topics_name UNIQUE (name)
);

CREATE TABLE metastore.topic_partitions (
    id           bigserial   PRIMARY KEY,
    topic_id     uuid        NOT NULL,
    partition    integer     NOT NULL CHECK (partition >= 0),
    start_offset bigint      NOT NULL,
    end_offset   bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_topic_partitions_start_offset CHECK (start_offset >= 0),
    CONSTRAINT chk_topic_partitions_end_offset CHECK (end_offset >= 0),
    CONSTRAINT chk_topic_partitions_end_after_start CHECK (end_offset >= start_offset),
    CONSTRAINT uni_topic_partitions_topic_partition UNIQUE (topic_id, partition),
    CONSTRAINT fk_topic_partitions_topic FOREIGN KEY (topic_id) REFERENCES metastore.topics (id)
);

-- Hot path: one row per committed batch, appended by producers; processed=false until the
-- materialiser assigns offsets (FOR UPDATE SKIP LOCKED, window sum over n_records).
CREATE TABLE metastore.record_batch_events (
    id         bigserial    PRIMARY KEY,
    topic_id   uuid         NOT NULL,
    partition  integer      NOT NULL,
    n_records  bigint       NOT NULL,
    s3_key     varchar(255) NOT NULL,
    processed  boolean      NOT NULL DEFAULT false,
    created_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT fk_record_batch_events_topic FOREIGN KEY (topic_id) REFERENCES metastore.topics (id)
);

-- Materialised batches: contiguous [start_offset, end_offset) ranges per topic/partition.
CREATE TABLE metastore.record_batches_v2 (
    id           bigserial    PRIMARY KEY,
    topic_id     uuid         NOT NULL,
    partition    integer      NOT NULL,
    start_offset bigint       NOT NULL,
    end_offset   bigint       NOT NULL,
    s3_key       varchar(255) NOT NULL,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT chk_record_batches_v2_offsets CHECK (start_offset >= 0 AND end_offset >= start_offset),
    CONSTRAINT fk_record_batches_v2_topic FOREIGN KEY (topic_id) REFERENCES metastore.topics (id)
);
