go test fuzz v1
string("DROP TABLE page_views;\n")
