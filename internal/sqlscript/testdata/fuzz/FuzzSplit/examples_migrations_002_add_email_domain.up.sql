go test fuzz v1
string("-- A derived column, filled by the backfill hook below rather than by a table rewrite.\nALTER TABLE customers ADD COLUMN email_domain text;\n")
