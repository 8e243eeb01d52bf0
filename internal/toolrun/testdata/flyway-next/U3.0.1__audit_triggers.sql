DROP TRIGGER invoices_audit ON invoices;
DROP TRIGGER orders_audit ON orders;
DROP FUNCTION audit_row_change();
