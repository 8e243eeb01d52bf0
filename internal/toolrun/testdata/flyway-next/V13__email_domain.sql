CREATE DOMAIN email_address AS text
    CONSTRAINT email_address_shape CHECK (VALUE ~ '^[^@\s]+@[^@\s]+$');

ALTER TABLE users ALTER COLUMN email TYPE email_address;
