-- A derived column, filled by the backfill hook below rather than by a table rewrite.
ALTER TABLE customers ADD COLUMN email_domain text;
