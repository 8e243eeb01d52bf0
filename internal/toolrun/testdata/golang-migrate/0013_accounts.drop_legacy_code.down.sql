ALTER TABLE accounts ADD COLUMN legacy_code text;
