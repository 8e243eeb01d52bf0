-- The reader's own migrations, as the docs' `./migrations`: docs-check runs the docs'
-- commands on this directory.
CREATE TABLE users (
    id   bigint PRIMARY KEY,
    name text NOT NULL
);
