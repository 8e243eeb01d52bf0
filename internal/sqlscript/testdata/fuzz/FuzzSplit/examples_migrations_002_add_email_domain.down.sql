go test fuzz v1
string("ALTER TABLE customers DROP COLUMN email_domain;\n")
