CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_status_placed_idx ON orders (status, placed_at);
CREATE INDEX CONCURRENTLY invoices_unpaid_due_idx ON invoices (due_on) WHERE amount_cents > 0;
