package repodb

// SetZstdMaxWindow lowers the zstd window bound for FuzzParse, whose
// mutations of the zstd seed otherwise declare windows of up to 2 GiB that
// each worker allocates (the fuzzer stalled, then lost a worker). Fuzz
// targets run after every test, so nothing else reads it meanwhile.
func SetZstdMaxWindow(n uint64) { zstdMaxWindow = n }
