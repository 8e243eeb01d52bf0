ALTER TABLE accounts DROP COLUMN legacy_code;
