ALTER TABLE orders DROP CONSTRAINT orders_refund_consistent;
ALTER TABLE orders DROP COLUMN refunded_at;
