CREATE SEQUENCE invoice_number_seq AS bigint START WITH 100000 INCREMENT BY 1 NO CYCLE;

COMMENT ON SEQUENCE invoice_number_seq IS 'Candidate invoice numbers; the ledger decides.';
