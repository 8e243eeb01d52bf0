go test fuzz v1
string("-- Customers of the example shop.\nCREATE TABLE customers (\n    id         bigint PRIMARY KEY,\n    name       text NOT NULL,\n    email      text NOT NULL,\n    created_at timestamptz NOT NULL DEFAULT now()\n);\n")
