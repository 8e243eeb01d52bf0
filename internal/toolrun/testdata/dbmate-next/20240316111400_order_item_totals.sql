-- migrate:up
ALTER TABLE order_items
    ADD COLUMN line_total_cents bigint GENERATED ALWAYS AS (quantity * unit_price_cents) STORED;

-- migrate:down
ALTER TABLE order_items DROP COLUMN line_total_cents;
