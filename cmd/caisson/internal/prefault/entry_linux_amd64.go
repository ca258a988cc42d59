package prefault

// entry is the binary's ELF entry point when it is linked with `-E github.com/caisson-sandbox/caisson/cmd/caisson/internal/prefault.entry`
// (the Makefile does): it populates the mappings of the binary's code and read-only data and jumps to the Go
// runtime's entry, _rt0_amd64_linux, with the stack and registers the kernel left. Go code must never call it.
func entry()
