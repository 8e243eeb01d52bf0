CREATE TABLE payments (
    id bigserial PRIMARY KEY,
    invoice_id bigint NOT NULL,
    amount_cents bigint NOT NULL,
    method text NOT NULL DEFAULT 'card',
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Added NOT VALID then validated, as one would on a large table.
ALTER TABLE payments ADD CONSTRAINT payments_invoice_id_fkey
    FOREIGN KEY (invoice_id) REFERENCES invoices (id) NOT VALID;
ALTER TABLE payments VALIDATE CONSTRAINT payments_invoice_id_fkey;
ALTER TABLE payments ADD CONSTRAINT payments_amount_positive CHECK (amount_cents > 0) NOT VALID;
ALTER TABLE payments VALIDATE CONSTRAINT payments_amount_positive;
ALTER TABLE payments ADD CONSTRAINT payments_method_known CHECK (method IN ('card', 'transfer', 'cash'));
