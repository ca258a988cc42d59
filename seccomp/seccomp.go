package seccomp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Profile names a seccomp policy: one of the built-in postures Default,
// Strict and Unconfined, or the path of an OCI/Docker JSON profile.
type Profile string

// The built-in postures.
const (
	// Default refuses kernel attack surface a sandboxed program has no
	// business using while keeping namespaced root useful: mount,
	// sethostname, `ip link` and nested unshare keep working.
	Default Profile = "default"
	// Strict is Default plus no nested namespaces, no mount-table changes
	// and no access to other processes; meant for untrusted code.
	Strict Profile = "strict"
	// Unconfined installs no filter.
	Unconfined Profile = "unconfined"
)

// ParseProfile validates the value of a --seccomp flag. Besides the three
// built-in names it accepts a file path, recognised by containing a '/' or
// ending in ".json" (write "./name" for a file without either); whether the
// file exists is checked by Compile.
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); {
	case p == Default, p == Strict, p == Unconfined:
		return p, nil
	case s == "":
		return "", errors.New("seccomp: empty profile (want default, strict, unconfined, or a path to a JSON file)")
	case p.IsFile():
		return p, nil
	}
	return "", fmt.Errorf("seccomp: unknown profile %q (want default, strict, unconfined, or a path to a JSON file)", s)
}

// IsFile reports whether p names a JSON profile file rather than a built-in
// posture.
func (p Profile) IsFile() bool {
	return p != Default && p != Strict && p != Unconfined &&
		(strings.ContainsRune(string(p), '/') || strings.HasSuffix(string(p), ".json"))
}

// Program is an assembled classic-BPF seccomp program for the architecture
// the process runs on. The Unconfined program has an empty Filter.
type Program struct {
	// Filter is the program as passed to seccomp(2).
	Filter []unix.SockFilter
	// Name is the profile name (for file profiles, the path or source given
	// to CompileOCI).
	Name string
	// Digest is "sha256:<hex>" of the program bytes (struct sock_filter,
	// little-endian: code u16, jt u8, jf u8, k u32 per instruction), or ""
	// for an empty program. It identifies the exact filter a sandbox ran
	// with, e.g. in `caisson inspect`.
	Digest string
	// Skipped lists syscall names the profile mentions that this
	// architecture does not have (sorted); their rules were left out, as
	// libseccomp does.
	Skipped []string
	// Flags are the SECCOMP_FILTER_FLAG_* bits Install loads the program
	// with: an OCI profile's flags (LOG, SPEC_ALLOW, WAIT_KILLABLE_RECV).
	Flags uint
}

// Len returns the number of instructions of the program.
func (p *Program) Len() int {
	if p == nil {
		return 0
	}
	return len(p.Filter)
}

// String returns a one-line summary: name, instruction count and digest.
func (p *Program) String() string {
	if p == nil {
		return "<nil>"
	}
	if len(p.Filter) == 0 {
		return fmt.Sprintf("%s (no filter)", p.Name)
	}
	return fmt.Sprintf("%s (%d instructions, %s)", p.Name, len(p.Filter), p.Digest)
}

// Disassemble returns the program in the textual form of
// golang.org/x/net/bpf, one instruction per line, prefixed by its index.
func (p *Program) Disassemble() string {
	var b strings.Builder
	for i, f := range p.Filter {
		in := bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
		fmt.Fprintf(&b, "%4d: %v\n", i, in)
	}
	return b.String()
}

// Compile builds the program of p for the running architecture. It is pure
// except that it reads the JSON file of a file profile. It fails on
// architectures without a syscall table (anything but amd64 and arm64).
func Compile(p Profile) (*Program, error) {
	a, err := nativeArch()
	if err != nil && p != Unconfined {
		return nil, err
	}
	return compileFor(a, p)
}

// CompileOCI compiles an OCI runtime-spec (LinuxSeccomp) or Docker seccomp
// profile for the running architecture. source names data in errors and
// becomes Program.Name.
func CompileOCI(data []byte, source string) (*Program, error) {
	a, err := nativeArch()
	if err != nil {
		return nil, err
	}
	return compileOCIFor(a, data, source)
}

func compileFor(a *archInfo, p Profile) (*Program, error) {
	switch {
	case p == Unconfined:
		return &Program{Name: string(p)}, nil
	case p == Default, p == Strict:
		if pp := precompiledFor(a.goarch, p); pp != nil {
			return &Program{Filter: pp.filter, Name: string(p), Digest: pp.digest, Skipped: pp.skipped}, nil
		}
		return compileBuiltin(a, p)
	case p.IsFile():
		data, err := os.ReadFile(string(p))
		if err != nil {
			return nil, fmt.Errorf("seccomp: %w", err)
		}
		return compileOCIFor(a, data, string(p))
	}
	_, err := ParseProfile(string(p))
	return nil, err
}

// compileBuiltin assembles a built-in posture's program (what zbuiltin.go holds, precompiled).
func compileBuiltin(a *archInfo, p Profile) (*Program, error) {
	return finish(builtinPolicy(a, p == Strict), string(p))
}

func compileOCIFor(a *archInfo, data []byte, source string) (*Program, error) {
	pol, err := parseOCI(a, data, source)
	if err != nil {
		return nil, err
	}
	return finish(pol, source)
}

func finish(pol *policy, name string) (*Program, error) {
	filter, err := assemble(pol)
	if err != nil {
		return nil, err
	}
	skipped := slices.Clone(pol.skipped)
	slices.Sort(skipped)
	return &Program{Filter: filter, Name: name, Digest: digest(filter), Skipped: skipped, Flags: pol.flags}, nil
}

// digest returns "sha256:<hex>" of the little-endian encoding of filter.
func digest(filter []unix.SockFilter) string {
	if len(filter) == 0 {
		return ""
	}
	buf := make([]byte, 0, 8*len(filter))
	for _, f := range filter {
		buf = binary.LittleEndian.AppendUint16(buf, f.Code)
		buf = append(buf, f.Jt, f.Jf)
		buf = binary.LittleEndian.AppendUint32(buf, f.K)
	}
	sum := sha256.Sum256(buf)
	return "sha256:" + hex.EncodeToString(sum[:])
}
