package seccomp

import "golang.org/x/sys/unix"

// precompiledProgram is a built-in posture's program for one architecture, assembled when the package was built
// (zbuiltin.go): init compiled it at every sandbox start before, which needed the syscall table and a SHA-256 of the
// program each time. TestPrecompiledBuiltins compiles them again and fails if the tables differ (`go test
// ./seccomp -run TestPrecompiledBuiltins -update` rewrites zbuiltin.go).
type precompiledProgram struct {
	filter  []unix.SockFilter
	digest  string
	skipped []string
}

// precompiledFor returns the precompiled program of posture p for architecture goarch, or nil.
func precompiledFor(goarch string, p Profile) *precompiledProgram {
	for i := range precompiled {
		if pp := &precompiled[i]; pp.goarch == goarch && pp.profile == p {
			return &pp.prog
		}
	}
	return nil
}
