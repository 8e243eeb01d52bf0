go test fuzz v1
string("DROP TABLE orders;\n")
