-- PostgreSQL cannot drop an enum value: rebuild the type without it.
UPDATE orders SET status = 'paid' WHERE status = 'refunded';
ALTER TYPE order_status RENAME TO order_status_before_refunds;
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'cancelled');
ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;
ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::text::order_status;
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'pending';
DROP TYPE order_status_before_refunds;
