DROP FUNCTION invoice_balance_cents(bigint);
UPDATE accounts SET status = 'suspended' WHERE status = 'closed';
ALTER TYPE account_status RENAME TO account_status_before_closed;
CREATE TYPE account_status AS ENUM ('trial', 'active', 'suspended');
ALTER TABLE accounts ALTER COLUMN status DROP DEFAULT;
ALTER TABLE accounts ALTER COLUMN status TYPE account_status USING status::text::account_status;
ALTER TABLE accounts ALTER COLUMN status SET DEFAULT 'trial';
DROP TYPE account_status_before_closed;
