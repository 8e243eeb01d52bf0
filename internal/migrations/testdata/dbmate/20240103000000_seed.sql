-- The first account.
-- migrate:up
INSERT INTO users (id, name) VALUES (1, 'root');
-- migrate:down
