module goserve

go 1.19
