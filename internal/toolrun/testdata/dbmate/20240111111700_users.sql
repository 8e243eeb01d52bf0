-- migrate:up
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email text NOT NULL,
    full_name text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_has_at CHECK (position('@' in email) > 1)
);

CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_account_id_idx ON users (account_id);

COMMENT ON COLUMN users.email IS 'Login; unique whatever its case.';

-- migrate:down
DROP TABLE users;
