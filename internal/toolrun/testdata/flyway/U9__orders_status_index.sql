DROP INDEX CONCURRENTLY invoices_unpaid_due_idx;
DROP INDEX CONCURRENTLY IF EXISTS orders_status_placed_idx;
