ALTER TABLE orders ADD COLUMN refunded_at timestamptz;
UPDATE orders SET status = 'refunded' WHERE refunded_at IS NOT NULL AND status = 'paid';
ALTER TABLE orders ADD CONSTRAINT orders_refund_consistent
    CHECK ((status = 'refunded') = (refunded_at IS NOT NULL));
