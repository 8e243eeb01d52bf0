-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY invoices_unpaid_due_idx ON invoices (due_on) WHERE amount_cents > 0;

-- migrate:down transaction:false
DROP INDEX CONCURRENTLY invoices_unpaid_due_idx;
