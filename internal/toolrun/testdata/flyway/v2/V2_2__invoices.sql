CREATE TABLE invoices (
    id bigserial PRIMARY KEY,
    number bigint NOT NULL DEFAULT nextval('invoice_number_seq') UNIQUE,
    order_id bigint NOT NULL REFERENCES orders (id),
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    issued_at timestamptz NOT NULL DEFAULT now(),
    due_on date NOT NULL,
    CONSTRAINT invoices_due_on_sane CHECK (due_on > DATE '2000-01-01')
);
