CREATE VIEW public.account_revenue AS
SELECT a.id AS account_id,
       a.name,
       count(DISTINCT o.id) AS orders,
       coalesce(sum(i.amount_cents), 0) AS invoiced_cents
FROM accounts a
LEFT JOIN orders o ON o.account_id = a.id AND o.status <> 'cancelled'
LEFT JOIN invoices i ON i.order_id = o.id
GROUP BY a.id, a.name;
