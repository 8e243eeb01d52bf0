-- Prices in cents, filled by the fill_price_cents backfill (../backfills) in after_ddl.
ALTER TABLE products ADD COLUMN price_cents bigint;
