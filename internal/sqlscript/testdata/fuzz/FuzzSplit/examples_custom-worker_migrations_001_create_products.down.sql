go test fuzz v1
string("DROP TABLE products;\n")
