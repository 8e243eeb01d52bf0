ALTER TABLE invoices ADD COLUMN due_date date;
