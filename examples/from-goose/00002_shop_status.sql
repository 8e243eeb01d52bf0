-- goose runs a migration with CREATE INDEX CONCURRENTLY outside a transaction only when told.
-- +goose NO TRANSACTION
-- +goose Up
ALTER TABLE shops ADD COLUMN status text NOT NULL DEFAULT 'open'
    CHECK (status IN ('open', 'closed', 'suspended'));
CREATE INDEX CONCURRENTLY shops_status_idx ON shops (status);

-- +goose Down
DROP INDEX CONCURRENTLY shops_status_idx;
ALTER TABLE shops DROP COLUMN status;
