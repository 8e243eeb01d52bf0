-- +goose Up
ALTER TABLE invoices ADD COLUMN notes text;
CREATE INDEX invoices_order_id_idx ON invoices (order_id);

-- +goose Down
DROP INDEX invoices_order_id_idx;
ALTER TABLE invoices DROP COLUMN notes;
