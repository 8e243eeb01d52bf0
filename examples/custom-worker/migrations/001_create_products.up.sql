-- Products of the example shop, with 100 to start with.
CREATE TABLE products (
    id    bigint PRIMARY KEY,
    name  text NOT NULL,
    price numeric(10, 2) NOT NULL
);

INSERT INTO products (id, name, price)
SELECT g, 'Product ' || g, 9.99 + g
FROM generate_series(1, 100) AS g;
