-- Customers of the example shop.
CREATE TABLE customers (
    id         bigint PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
