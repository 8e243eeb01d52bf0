CREATE SCHEMA reporting;
ALTER MATERIALIZED VIEW monthly_revenue SET SCHEMA reporting;
ALTER VIEW account_revenue SET SCHEMA reporting;
REFRESH MATERIALIZED VIEW reporting.monthly_revenue;
