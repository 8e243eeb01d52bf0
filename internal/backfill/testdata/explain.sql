-- The EXPLAIN output in doc.go: the batch statements of the backfill hook, as it sends them for
-- a table "t" keyed by "id" bigint, at a batch of 50,000 rows.
-- Run: psql -X -f internal/backfill/testdata/explain.sql (in a scratch database; drops t and r).
\pset pager off
SET plan_cache_mode = force_custom_plan;  -- the plans of the first executions, with the values
DROP TABLE IF EXISTS t, r;

\echo === 1. A table written in key order, 1,000,000 rows, vacuumed and analyzed, then 30% backfilled.
CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b text NOT NULL) WITH (autovacuum_enabled = off);
INSERT INTO t SELECT g, g % 1000, md5(g::text) FROM generate_series(1, 1000000) g;
VACUUM (ANALYZE) t;
DO $$ BEGIN FOR i IN 0..5 LOOP UPDATE t SET a = a + 1 WHERE id > i * 50000 AND id <= (i + 1) * 50000; COMMIT; END LOOP; END $$;
PREPARE bound(text, bigint) AS SELECT "id"::text FROM "t" WHERE ("id") > ($1::text::bigint) ORDER BY "t"."id" OFFSET $2 LIMIT 1;
PREPARE upd(text, text) AS UPDATE "t" SET a = a + 1 WHERE ("id") > ($1::text::bigint) AND ("id") <= ($2::text::bigint);
PREPARE lim(text) AS UPDATE t SET a = a + 1 FROM (SELECT id FROM t WHERE id > $1::text::bigint ORDER BY id LIMIT 50000) s WHERE t.id = s.id;
\echo --- before ANALYZE (statistics of the table as loaded)
BEGIN; SET LOCAL enable_sort = off; EXPLAIN EXECUTE bound('300000', 49999); COMMIT;
BEGIN; SET LOCAL enable_seqscan = off; EXPLAIN EXECUTE upd('300000', '350000'); COMMIT;
\echo the same without enable_sort and enable_seqscan off, and the LIMIT shape
EXPLAIN EXECUTE bound('300000', 49999);
EXPLAIN EXECUTE upd('300000', '350000');
EXPLAIN EXECUTE lim('300000');
ANALYZE t;
\echo --- after ANALYZE
BEGIN; SET LOCAL enable_sort = off; EXPLAIN EXECUTE bound('300000', 49999); COMMIT;
BEGIN; SET LOCAL enable_seqscan = off; EXPLAIN EXECUTE upd('300000', '350000'); COMMIT;
\echo the same without enable_sort and enable_seqscan off, and the LIMIT shape
EXPLAIN EXECUTE bound('300000', 49999);
EXPLAIN EXECUTE upd('300000', '350000');
EXPLAIN EXECUTE lim('300000');
\echo the range UPDATE of (300000, 350000], run and rolled back
BEGIN; SET LOCAL enable_seqscan = off; EXPLAIN (ANALYZE, TIMING OFF) EXECUTE upd('300000', '350000'); ROLLBACK;
\echo the LIMIT shape for the next 50,000 rows after 350000, run and rolled back
BEGIN; EXPLAIN (ANALYZE, TIMING OFF) EXECUTE lim('350000'); ROLLBACK;
DEALLOCATE ALL;

\echo === 2. A table written in random key order, analyzed at 100,000 rows, then grown to 1,000,000.
CREATE TABLE r (id bigint PRIMARY KEY, a int NOT NULL, b text NOT NULL) WITH (autovacuum_enabled = off);
INSERT INTO r SELECT g, g % 1000, md5(g::text) FROM generate_series(1, 100000) g ORDER BY random();
ANALYZE r;
INSERT INTO r SELECT g, g % 1000, md5(g::text) FROM generate_series(100001, 1000000) g ORDER BY random();
PREPARE bound(text, bigint) AS SELECT "id"::text FROM "r" WHERE ("id") > ($1::text::bigint) ORDER BY "r"."id" OFFSET $2 LIMIT 1;
PREPARE upd(text, text) AS UPDATE "r" SET a = a + 1 WHERE ("id") > ($1::text::bigint) AND ("id") <= ($2::text::bigint);
\echo --- the bound at 300,000, without and with enable_sort off
EXPLAIN (ANALYZE, TIMING OFF) EXECUTE bound('300000', 49999);
BEGIN; SET LOCAL enable_sort = off; EXPLAIN (ANALYZE, TIMING OFF) EXECUTE bound('300000', 49999); COMMIT;
\echo --- the UPDATE of (50000, 100000] without enable_seqscan off, of (0, 50000] with it (run, rolled back)
BEGIN; EXPLAIN (ANALYZE, TIMING OFF) EXECUTE upd('50000', '100000'); ROLLBACK;
BEGIN; SET LOCAL enable_seqscan = off; EXPLAIN (ANALYZE, TIMING OFF) EXECUTE upd('0', '50000'); ROLLBACK;
DEALLOCATE ALL;
DROP TABLE t, r;
