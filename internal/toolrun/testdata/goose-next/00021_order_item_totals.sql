-- +goose Up
ALTER TABLE order_items
    ADD COLUMN line_total_cents bigint GENERATED ALWAYS AS (quantity * unit_price_cents) STORED;

-- +goose Down
ALTER TABLE order_items DROP COLUMN line_total_cents;
