-- A generated table, large enough to watch a batched backfill for a few seconds.
CREATE TABLE page_views (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    viewed_at   timestamptz NOT NULL
);
INSERT INTO page_views (id, customer_id, viewed_at)
SELECT g, 1 + (g::bigint * 7919) % 20000, timestamptz '2026-01-01 00:00:00+00' + g * interval '7 seconds'
FROM generate_series(1, 600000) AS g;

-- The column to fill: added without a default, so no rewrite and a brief lock; the after_ddl
-- backfill fills it in batches.
ALTER TABLE page_views ADD COLUMN viewed_on date;
ANALYZE page_views;
