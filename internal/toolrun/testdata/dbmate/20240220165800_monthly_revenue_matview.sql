-- migrate:up
CREATE MATERIALIZED VIEW monthly_revenue AS
SELECT date_trunc('month', i.issued_at AT TIME ZONE 'UTC') AS month,
       o.currency,
       sum(i.amount_cents) AS amount_cents,
       count(*) AS invoices
FROM invoices i
JOIN orders o ON o.id = i.order_id
GROUP BY 1, 2
WITH DATA;

CREATE UNIQUE INDEX monthly_revenue_month_currency ON monthly_revenue (month, currency);

-- migrate:down
DROP MATERIALIZED VIEW monthly_revenue;
