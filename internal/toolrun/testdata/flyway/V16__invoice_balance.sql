-- PostgreSQL 12 and later accept ADD VALUE in a transaction as long as the value is not used in it.
ALTER TYPE account_status ADD VALUE IF NOT EXISTS 'closed';

CREATE FUNCTION invoice_balance_cents(p_invoice_id bigint) RETURNS bigint
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT i.amount_cents - coalesce((SELECT sum(p.amount_cents) FROM payments p WHERE p.invoice_id = i.id), 0)
    FROM invoices i
    WHERE i.id = p_invoice_id;
END;
