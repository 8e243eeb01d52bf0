ALTER VIEW reporting.account_revenue SET SCHEMA public;
ALTER MATERIALIZED VIEW reporting.monthly_revenue SET SCHEMA public;
DROP SCHEMA reporting;
