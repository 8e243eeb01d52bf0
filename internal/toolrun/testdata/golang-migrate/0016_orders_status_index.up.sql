CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_status_placed_idx ON orders (status, placed_at);
