-- migrate:up
CREATE FUNCTION order_total_cents(p_order_id bigint) RETURNS bigint
LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(sum(quantity * unit_price_cents), 0)::bigint
    FROM order_items
    WHERE order_id = p_order_id;
$fn$;

CREATE FUNCTION issue_invoice(p_order_id bigint, p_days_due integer DEFAULT 30) RETURNS bigint
LANGUAGE plpgsql AS $body$
DECLARE
    v_total bigint;
    v_invoice bigint;
BEGIN
    v_total := order_total_cents(p_order_id);
    IF v_total = 0 THEN
        RAISE EXCEPTION 'order % has no billable lines; nothing to invoice', p_order_id;
    END IF;
    INSERT INTO invoices (order_id, amount_cents, due_on)
    VALUES (p_order_id, v_total, current_date + p_days_due)
    RETURNING id INTO v_invoice;
    UPDATE orders SET total_cents = v_total WHERE id = p_order_id;
    EXECUTE format($q$NOTIFY invoices_issued, %L$q$, v_invoice::text);
    RETURN v_invoice;
END;
$body$;

-- migrate:down
DROP FUNCTION issue_invoice(bigint, integer);
DROP FUNCTION order_total_cents(bigint);
