-- +goose up
ALTER TABLE users ADD COLUMN email text;
-- +goose down
-- nothing to undo: the column stays
