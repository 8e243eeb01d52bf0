-- +goose Up
ALTER TABLE accounts DROP COLUMN legacy_code;

-- +goose Down
ALTER TABLE accounts ADD COLUMN legacy_code text;
