go test fuzz v1
string("-- Products of the example shop, with 100 to start with.\nCREATE TABLE products (\n    id    bigint PRIMARY KEY,\n    name  text NOT NULL,\n    price numeric(10, 2) NOT NULL\n);\n\nINSERT INTO products (id, name, price)\nSELECT g, 'Product ' || g, 9.99 + g\nFROM generate_series(1, 100) AS g;\n")
