-- +goose Up
CREATE TYPE account_status AS ENUM ('trial', 'active', 'suspended');

CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    status account_status NOT NULL DEFAULT 'trial',
    legacy_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_name_not_blank CHECK (btrim(name) <> '')
);

COMMENT ON TABLE accounts IS 'Customers: one row per billing relationship.';

INSERT INTO accounts (name, status, legacy_code) VALUES ('system', 'active', 'SYS-0');

-- +goose Down
DROP TABLE accounts;
DROP TYPE account_status;
