DROP MATERIALIZED VIEW monthly_revenue;
