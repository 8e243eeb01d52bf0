DROP FUNCTION issue_invoice(bigint, integer);
DROP FUNCTION order_total_cents(bigint);
