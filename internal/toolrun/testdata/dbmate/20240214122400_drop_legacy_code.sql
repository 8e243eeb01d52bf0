-- migrate:up
ALTER TABLE accounts DROP COLUMN legacy_code;

-- migrate:down
ALTER TABLE accounts ADD COLUMN legacy_code text;
