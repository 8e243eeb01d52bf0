-- +goose Up
ALTER TABLE users RENAME COLUMN full_name TO display_name;
UPDATE users SET display_name = split_part(email, '@', 1) WHERE display_name IS NULL;

-- +goose Down
ALTER TABLE users RENAME COLUMN display_name TO full_name;
