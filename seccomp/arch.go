package seccomp

//go:generate go run ./internal/gen -o .

import (
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Request numbers of the terminal ioctls the built-in postures refuse. They are
// the same on every architecture this package supports (asm-generic/ioctls.h).
const (
	ioctlTIOCSTI   = 0x5412
	ioctlTIOCLINUX = 0x541c
)

// x32SyscallBit marks x32 ABI syscalls made with AUDIT_ARCH_X86_64.
const x32SyscallBit = 0x40000000

// archInfo describes one native ABI the compiler can generate programs for.
type archInfo struct {
	goarch    string                   // runtime.GOARCH
	scmpArch  string                   // libseccomp/OCI name, e.g. "SCMP_ARCH_X86_64"
	mobyArch  string                   // name used by Docker profiles' includes/excludes "arches"
	auditArch uint32                   // seccomp_data.arch of native syscalls
	x32       bool                     // refuse nr&x32SyscallBit (amd64's x32 ABI) with ENOSYS
	build     func() map[string]uint32 // the generated table

	// The table is built on first use (a profile from a file; the built-in postures are precompiled): building
	// a map of ~400 names at every start of caisson, in the parent and in init, cost more than their filter.
	once     sync.Once
	syscalls map[string]uint32 // name -> number
	maxNr    uint32            // highest number in syscalls
}

func newArch(goarch, scmp, moby string, audit uint32, x32 bool, table func() map[string]uint32) *archInfo {
	return &archInfo{goarch: goarch, scmpArch: scmp, mobyArch: moby, auditArch: audit, x32: x32, build: table}
}

// table returns the syscall names of the architecture and their numbers.
func (a *archInfo) table() map[string]uint32 {
	a.once.Do(func() {
		a.syscalls = a.build()
		for _, nr := range a.syscalls {
			a.maxNr = max(a.maxNr, nr)
		}
	})
	return a.syscalls
}

// highest returns the highest syscall number in the table.
func (a *archInfo) highest() uint32 {
	a.table()
	return a.maxNr
}

var (
	archX86_64  = newArch("amd64", "SCMP_ARCH_X86_64", "amd64", unix.AUDIT_ARCH_X86_64, true, syscallsX86_64)
	archAArch64 = newArch("arm64", "SCMP_ARCH_AARCH64", "arm64", unix.AUDIT_ARCH_AARCH64, false, syscallsAArch64)
)

// archByGOARCH returns the table for goarch, or an error naming the
// unsupported architecture.
func archByGOARCH(goarch string) (*archInfo, error) {
	switch goarch {
	case "amd64":
		return archX86_64, nil
	case "arm64":
		return archAArch64, nil
	}
	return nil, fmt.Errorf("seccomp: unsupported architecture %q (syscall tables exist for amd64 and arm64 only)", goarch)
}

// nativeArch returns the table for the architecture the program runs on.
func nativeArch() (*archInfo, error) { return archByGOARCH(runtime.GOARCH) }

// SyscallNumber returns the number of the named system call on the running
// architecture, as used by the generated filters.
func SyscallNumber(name string) (nr uint32, ok bool) {
	a, err := nativeArch()
	if err != nil {
		return 0, false
	}
	nr, ok = a.table()[name]
	return nr, ok
}
