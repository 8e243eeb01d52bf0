-- +goose Up
-- PostgreSQL 12 and later accept ADD VALUE in a transaction as long as the value is not used in it.
ALTER TYPE account_status ADD VALUE IF NOT EXISTS 'closed';

-- +goose StatementBegin
CREATE FUNCTION invoice_balance_cents(p_invoice_id bigint) RETURNS bigint
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT i.amount_cents - coalesce((SELECT sum(p.amount_cents) FROM payments p WHERE p.invoice_id = i.id), 0)
    FROM invoices i
    WHERE i.id = p_invoice_id;
END;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION invoice_balance_cents(bigint);
UPDATE accounts SET status = 'suspended' WHERE status = 'closed';
ALTER TYPE account_status RENAME TO account_status_before_closed;
CREATE TYPE account_status AS ENUM ('trial', 'active', 'suspended');
ALTER TABLE accounts ALTER COLUMN status DROP DEFAULT;
ALTER TABLE accounts ALTER COLUMN status TYPE account_status USING status::text::account_status;
ALTER TABLE accounts ALTER COLUMN status SET DEFAULT 'trial';
DROP TYPE account_status_before_closed;
