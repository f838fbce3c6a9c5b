module mxresolved.example/client

go 1.19
