-- V4__content.sql — seed 003: "Performance Test Failure Analysis - 2025-10-17"
-- (gallery tag filter: EXISTS over content_tags, 88M junction rows, 7-13 s vs a 3 s target).
--
-- Scale-1 shape from the seed: content_items 65,204 rows, content_items_auto 1,104,089 rows,
-- content_tags 88,146,610 rows (~75 tags per item), one popular tag ("anime") on ~1% of rows.
--
-- content_source: TWO values, 'regular' (row of content.content_items) and 'auto' (row of
-- content.content_items_auto). The seed's four "content source types" (user-regular,
-- user-auto, community-regular, community-auto) are query-side filters: user vs community
-- is decided by content_items*.user_id = the viewer or not, which depends on who is looking,
-- so it cannot be a property of a (content, tag) row. The junction column only says which
-- table content_id points into — consistent with seed Proposal 9 ("2 partitions: regular,
-- auto") and with the upstream migration (content_source VARCHAR(10) 'regular' | 'auto').
--
-- The owner column is user_id (the creator); public = NOT is_private.
-- content_tags keeps exactly its three existing indexes: the primary key
-- (content_id, content_source, tag_id), idx_content_tags_tag_content (tag_id, content_id) and
-- idx_content_tags_content (content_id, content_source).
--
-- Deliberately NOT here (experiment variants, seed 003 proposals 3, 4, 6, 9):
--   denormalised tag_ids uuid[] + GIN, (tag_id, content_source, content_id) and per-source
--   partial indexes, keyset-pagination indexes such as (user_id, created_at DESC, id),
--   a partitioned content_tags, materialised views, tag count tables.

CREATE SCHEMA IF NOT EXISTS content;

CREATE TABLE content.content_items (
    id            uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid         NOT NULL,                 -- creator
    title         varchar(255) NOT NULL,
    content_type  varchar(50)  NOT NULL CHECK (content_type IN ('text', 'image', 'video', 'audio')),
    content_data  text         NOT NULL,
    prompt        varchar(20000),
    path_thumb    varchar(512),
    item_metadata jsonb        NOT NULL DEFAULT '{}'::jsonb,
    quality_score real         NOT NULL DEFAULT 0,
    is_private    boolean      NOT NULL DEFAULT false,
    created_at    timestamp    NOT NULL DEFAULT now(),
    updated_at    timestamp    NOT NULL DEFAULT now()
);

-- Auto-generated content: same shape.
CREATE TABLE content.content_items_auto (
    id            uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid         NOT NULL,
    title         varchar(255) NOT NULL,
    content_type  varchar(50)  NOT NULL CHECK (content_type IN ('text', 'image', 'video', 'audio')),
    content_data  text         NOT NULL,
    prompt        varchar(20000),
    path_thumb    varchar(512),
    item_metadata jsonb        NOT NULL DEFAULT '{}'::jsonb,
    quality_score real         NOT NULL DEFAULT 0,
    is_private    boolean      NOT NULL DEFAULT false,
    created_at    timestamp    NOT NULL DEFAULT now(),
    updated_at    timestamp    NOT NULL DEFAULT now()
);

-- What the app indexes on each content table: newest-first listing and the creator filter.
CREATE INDEX idx_content_items_created_at ON content.content_items (created_at);
CREATE INDEX idx_content_items_user_id ON content.content_items (user_id);
CREATE INDEX idx_content_items_auto_created_at ON content.content_items_auto (created_at);
CREATE INDEX idx_content_items_auto_user_id ON content.content_items_auto (user_id);

CREATE TABLE content.tags (
    id         uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    name       varchar(255) NOT NULL,
    created_at timestamp    NOT NULL DEFAULT now(),
    CONSTRAINT uq_tags_name UNIQUE (name)
);

-- Junction: content_id points into content_items ('regular') or content_items_auto ('auto'),
-- so it cannot carry a foreign key; tag_id does.
CREATE TABLE content.content_tags (
    content_id     uuid        NOT NULL,
    content_source varchar(10) NOT NULL CHECK (content_source IN ('regular', 'auto')),
    tag_id         uuid        NOT NULL REFERENCES content.tags (id) ON DELETE CASCADE,
    CONSTRAINT content_tags_pkey PRIMARY KEY (content_id, content_source, tag_id)
);

-- "all content with this tag" — the gallery filter's access path today.
CREATE INDEX idx_content_tags_tag_content ON content.content_tags (tag_id, content_id);
-- "all tags of this content".
CREATE INDEX idx_content_tags_content ON content.content_tags (content_id, content_source);
