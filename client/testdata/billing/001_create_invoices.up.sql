CREATE TABLE invoices (id bigint PRIMARY KEY, amount_cents bigint NOT NULL);
