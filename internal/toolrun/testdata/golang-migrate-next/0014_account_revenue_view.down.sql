DROP VIEW account_revenue;
