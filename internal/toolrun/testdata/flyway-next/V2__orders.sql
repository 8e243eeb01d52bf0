CREATE TYPE order_status AS ENUM ('pending', 'paid', 'cancelled');

CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    user_id bigint REFERENCES users (id) ON DELETE SET NULL,
    status order_status NOT NULL DEFAULT 'pending',
    total_cents bigint NOT NULL DEFAULT 0 CHECK (total_cents >= 0),
    currency char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    placed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_account_placed_idx ON orders (account_id, placed_at DESC);
