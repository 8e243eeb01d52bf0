-- Users and their updated_at trigger.
-- +goose Up
CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, updated_at timestamptz);

-- +goose StatementBegin
CREATE FUNCTION touch() RETURNS trigger AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION touch();
DROP TABLE users;
