DROP INDEX invoices_order_id_idx;
ALTER TABLE invoices DROP COLUMN notes;
