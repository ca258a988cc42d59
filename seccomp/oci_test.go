package seccomp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func compileOCIT(t *testing.T, a *archInfo, profile string) *vm {
	t.Helper()
	prog, err := compileOCIFor(a, []byte(profile), "test.json")
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, profile)
	}
	return newVM(t, prog)
}

// TestOCIOperators checks every operator on 64-bit comparands whose high and
// low words both matter, against Go's own evaluation.
func TestOCIOperators(t *testing.T) {
	values := []uint64{
		0, 1, 4, 5, 6, 0xffffffff, 0x100000000, 0x100000004, 0x100000005, 0x100000006,
		0x1ffffffff, 0x200000005, 0xffffffff00000005, 0xfffffffffffffffe, 0xffffffffffffffff,
	}
	eval := map[string]func(arg, v, v2 uint64) bool{
		"SCMP_CMP_EQ":        func(arg, v, _ uint64) bool { return arg == v },
		"SCMP_CMP_NE":        func(arg, v, _ uint64) bool { return arg != v },
		"SCMP_CMP_LT":        func(arg, v, _ uint64) bool { return arg < v },
		"SCMP_CMP_LE":        func(arg, v, _ uint64) bool { return arg <= v },
		"SCMP_CMP_GT":        func(arg, v, _ uint64) bool { return arg > v },
		"SCMP_CMP_GE":        func(arg, v, _ uint64) bool { return arg >= v },
		"SCMP_CMP_MASKED_EQ": func(arg, m, d uint64) bool { return arg&m == d },
	}
	const errnoRet = 99
	a := archX86_64
	read := a.table()["read"]
	for opName, f := range eval {
		for _, v := range values {
			v2 := uint64(0)
			if opName == "SCMP_CMP_MASKED_EQ" {
				v, v2 = 0xffffffff0000000f, v&0xffffffff0000000f // mask both words
			}
			profile := fmt.Sprintf(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
				{"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":%d,
				 "args":[{"index":2,"value":%d,"valueTwo":%d,"op":%q}]}]}`, errnoRet, v, v2, opName)
			m := compileOCIT(t, a, profile)
			for _, arg := range values {
				want := allow
				if f(arg, v, v2) {
					want = retErrno | errnoRet
				}
				got := m.run(call{arch: a.auditArch, nr: read, args: [6]uint64{0, 0, arg}})
				if got != want {
					t.Errorf("%s %#x (valueTwo %#x): arg %#x = %s, want %s", opName, v, v2, arg, retString(got), retString(want))
				}
			}
		}
	}
}

func TestOCIProfile(t *testing.T) {
	// An allowlist with 64-bit MASKED_EQ, AND and OR semantics, Docker
	// includes/excludes, an unknown name, the old "name" form and archMap.
	profile := `{
	  "defaultAction": "SCMP_ACT_ERRNO",
	  "defaultErrnoRet": 38,
	  "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
	  "syscalls": [
	    {"names": ["read", "write", "no_such_call", "exit_group"], "action": "SCMP_ACT_ALLOW"},
	    {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
	    {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
	     "args": [{"index": 3, "value": 18446744069414584352, "valueTwo": 4294967328, "op": "SCMP_CMP_MASKED_EQ"}]},
	    {"names": ["openat"], "action": "SCMP_ACT_ALLOW",
	     "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 64, "op": "SCMP_CMP_LT"}]},
	    {"names": ["close"], "action": "SCMP_ACT_ALLOW",
	     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
	    {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"},
	    {"names": ["ioctl"], "action": "SCMP_ACT_KILL_PROCESS",
	     "args": [{"index": 1, "value": 4294967295, "valueTwo": 21522, "op": "SCMP_CMP_MASKED_EQ"}]},
	    {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
	     "args": [{"index": 1, "value": 4294967295, "valueTwo": 21522, "op": "SCMP_CMP_MASKED_EQ"}]},
	    {"names": ["kill"], "action": "SCMP_ACT_TRAP"},
	    {"names": ["tkill"], "action": "SCMP_ACT_KILL"},
	    {"names": ["tgkill"], "action": "SCMP_ACT_KILL_THREAD"},
	    {"names": ["getppid"], "action": "SCMP_ACT_LOG"},
	    {"names": ["getuid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
	    {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0},
	    {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
	    {"names": ["sync"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
	    {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
	    {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
	    {"names": ["getcwd"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
	    {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
	    {"names": ["fork"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "4.8"}}
	  ]
	}`
	a := archX86_64
	prog, err := compileOCIFor(a, []byte(profile), "test.json")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(prog.Skipped, []string{"no_such_call"}) {
		t.Errorf("Skipped = %q, want [no_such_call]", prog.Skipped)
	}
	m := newVM(t, prog)
	deny := errno(unix.ENOSYS) // defaultErrnoRet 38
	cases := []struct {
		name string
		args [6]uint64
		want uint32
	}{
		{"read", [6]uint64{}, allow},
		{"write", [6]uint64{}, allow},
		{"getpid", [6]uint64{}, allow},
		{"execve", [6]uint64{}, deny},
		// mmap: args[3] & 0xffffffff00000020 == 0x0000000100000020
		{"mmap", [6]uint64{0, 0, 0, 0x100000020}, allow},
		{"mmap", [6]uint64{0, 0, 0, 0x100000022}, allow},
		{"mmap", [6]uint64{0, 0, 0, 0x000000020}, deny},
		{"mmap", [6]uint64{0, 0, 0, 0x100000000}, deny},
		{"mmap", [6]uint64{0, 0, 0, 0x300000020}, deny},
		// openat: args[0] == 3 && args[2] < 64
		{"openat", [6]uint64{3, 0, 63}, allow},
		{"openat", [6]uint64{3, 0, 64}, deny},
		{"openat", [6]uint64{4, 0, 0}, deny},
		{"openat", [6]uint64{3 | 1<<32, 0, 0}, deny},
		// close: args[0] == 1 || args[0] == 2 (same index twice: ORed, like runc)
		{"close", [6]uint64{1}, allow},
		{"close", [6]uint64{2}, allow},
		{"close", [6]uint64{3}, deny},
		// ioctl: the strictest matching rule wins, whatever the order.
		{"ioctl", [6]uint64{0, 0x5401}, allow},
		{"ioctl", [6]uint64{0, 0x5412}, kill},
		{"ioctl", [6]uint64{0, 1<<32 | 0x5412}, kill},
		{"kill", [6]uint64{}, retTrap},
		{"tkill", [6]uint64{}, retKillThread},
		{"tgkill", [6]uint64{}, retKillThread},
		{"getppid", [6]uint64{}, retLog},
		{"getuid", [6]uint64{}, retTrace | 7},
		{"getgid", [6]uint64{}, retErrno},
		{"chroot", [6]uint64{}, deny},      // includes caps: never
		{"sync", [6]uint64{}, allow},       // excludes caps: always applies
		{"arch_prctl", [6]uint64{}, allow}, // includes arches amd64
		{"getcwd", [6]uint64{}, deny},      // excludes arches amd64
		{"ptrace", [6]uint64{}, allow},     // minKernel assumed satisfied
		{"fork", [6]uint64{}, deny},        // excluded from 4.8 on
	}
	for _, c := range cases {
		got := m.run(call{arch: a.auditArch, nr: nr(t, a, c.name), args: c.args})
		if got != c.want {
			t.Errorf("%s(%#x) = %s, want %s", c.name, c.args, retString(got), retString(c.want))
		}
	}
	// The prefix applies to file profiles too.
	for _, c := range []call{
		{arch: unix.AUDIT_ARCH_I386, nr: 3},
		{arch: a.auditArch, nr: x32SyscallBit | 0},
		{arch: a.auditArch, nr: a.highest() + 1},
	} {
		want := enosys
		if c.arch != a.auditArch {
			want = kill
		}
		if got := m.run(c); got != want {
			t.Errorf("prefix %+v = %s, want %s", c, retString(got), retString(want))
		}
	}
	// set_tls is arm-only and skipped on amd64 without error; on arm64 it is included.
	if _, err := compileOCIFor(archAArch64, []byte(profile), "test.json"); err != nil {
		t.Errorf("arm64: %v", err)
	}
}

// TestMobyDefault compiles Docker's default profile and spot-checks it.
func TestMobyDefault(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "moby-default.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range testArches {
		prog, err := compileOCIFor(a, data, "moby-default.json")
		if err != nil {
			t.Fatalf("%s: %v", a.goarch, err)
		}
		t.Logf("%s: %s, %d names skipped", a.goarch, prog, len(prog.Skipped))
		m := newVM(t, prog)
		deny := eperm // defaultErrnoRet 1
		cases := []struct {
			name string
			args [6]uint64
			want uint32
		}{
			{"read", [6]uint64{}, allow},
			{"execve", [6]uint64{}, allow},
			{"ptrace", [6]uint64{}, allow}, // minKernel 4.8
			{"clone", [6]uint64{uint64(unix.SIGCHLD)}, allow},
			{"clone", [6]uint64{unix.CLONE_NEWUSER}, deny},
			{"clone", [6]uint64{1<<32 | unix.CLONE_NEWNET}, deny},
			{"clone3", [6]uint64{}, enosys},
			{"socket", [6]uint64{unix.AF_INET}, allow},
			{"socket", [6]uint64{afALG}, deny},
			{"socket", [6]uint64{39}, allow},
			{"socket", [6]uint64{afVSOCK}, deny},
			{"socket", [6]uint64{41}, allow},
			{"personality", [6]uint64{0xffffffff}, allow},
			{"personality", [6]uint64{0x40000}, deny},
			{"keyctl", [6]uint64{}, deny},
			{"mount", [6]uint64{}, deny},
			{"unshare", [6]uint64{}, deny},
			{"bpf", [6]uint64{}, deny},
			{"open_by_handle_at", [6]uint64{}, deny},
		}
		if a == archX86_64 {
			cases = append(cases, struct {
				name string
				args [6]uint64
				want uint32
			}{"arch_prctl", [6]uint64{}, allow})
		}
		for _, c := range cases {
			got := m.run(call{arch: a.auditArch, nr: nr(t, a, c.name), args: c.args})
			if got != c.want {
				t.Errorf("%s: %s(%#x) = %s, want %s", a.goarch, c.name, c.args, retString(got), retString(c.want))
			}
		}
		if got := m.run(call{arch: unix.AUDIT_ARCH_I386, nr: 3}); got != kill {
			t.Errorf("%s: i386 call = %s, want KILL_PROCESS", a.goarch, retString(got))
		}
	}
}

func TestOCIErrors(t *testing.T) {
	const sc = `"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},{"names":["write"],"action":"SCMP_ACT_ALLOW"},{"names":["close"],"action":"SCMP_ACT_ALLOW"},`
	cases := []struct {
		name, profile, want string
	}{
		{"unknown action", `{"defaultAction":"SCMP_ACT_ERRNO",` + sc + `{"names":["open"],"action":"SCMP_ACT_FOO"}]}`,
			`seccomp: test.json: syscalls[3].action: unknown action "SCMP_ACT_FOO"`},
		{"missing action", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["open"]}]}`,
			`seccomp: test.json: syscalls[0].action: missing`},
		{"bad op", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["open"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}`,
			`seccomp: test.json: syscalls[0].args[0].op: unknown operator "SCMP_CMP_XX"`},
		{"empty op", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["open"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1}]}]}`,
			`seccomp: test.json: syscalls[0].args[0].op: unknown operator ""`},
		{"index 6", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["open"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}`,
			`seccomp: test.json: syscalls[0].args[1].index: 6 out of range (0..5)`},
		{"negative index", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["open"],"action":"SCMP_ACT_ALLOW","args":[{"index":-1,"value":1,"op":"SCMP_CMP_EQ"}]}]}`,
			`seccomp: test.json: syscalls.args.index: cannot use JSON number -1 as uint`},
		{"missing defaultAction", `{"syscalls":[]}`, `seccomp: test.json: defaultAction: missing`},
		{"unknown defaultAction", `{"defaultAction":"ALLOW"}`, `seccomp: test.json: defaultAction: unknown action "ALLOW"`},
		{"errnoRet on allow", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["open"],"action":"SCMP_ACT_ALLOW","errnoRet":1}]}`,
			`seccomp: test.json: syscalls[0].errnoRet: errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not "SCMP_ACT_ALLOW"`},
		{"errnoRet too big", `{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}`,
			`seccomp: test.json: defaultErrnoRet: errnoRet 70000 out of range (0..4095)`},
		{"notify", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["open"],"action":"SCMP_ACT_NOTIFY"}]}`,
			`seccomp: test.json: syscalls[0].action: "SCMP_ACT_NOTIFY" is not supported (caisson runs no seccomp agent)`},
		{"no names", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}`,
			`seccomp: test.json: syscalls[0].names: no syscall names`},
		{"empty name", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read",""],"action":"SCMP_ACT_ERRNO"}]}`,
			`seccomp: test.json: syscalls[0].names[1]: empty syscall name`},
		{"name and names", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"read","names":["write"],"action":"SCMP_ACT_ERRNO"}]}`,
			`seccomp: test.json: syscalls[0].name: cannot be combined with names`},
		{"unknown arch", `{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_PDP11"]}`,
			`seccomp: test.json: architectures[1]: unknown architecture "SCMP_ARCH_PDP11"`},
		{"arch and archMap", `{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}`,
			`seccomp: test.json: archMap: cannot be combined with architectures`},
		{"unknown flag", `{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_FOO"]}`,
			`seccomp: test.json: flags[0]: unknown flag "SECCOMP_FILTER_FLAG_FOO"`},
		{"bad minKernel", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"4"}}]}`,
			`seccomp: test.json: syscalls[0].includes.minKernel: invalid kernel version "4", want "<kernel>.<major>"`},
		{"syntax", `{"defaultAction":"SCMP_ACT_ALLOW",}`,
			`seccomp: test.json: invalid character '}' looking for beginning of object key string`},
		{"trailing", `{"defaultAction":"SCMP_ACT_ALLOW"} {}`, `seccomp: test.json: trailing data after the JSON object`},
		{"empty", ``, `seccomp: test.json: EOF`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := compileOCIFor(archX86_64, []byte(c.profile), "test.json")
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if err.Error() != c.want {
				t.Errorf("error\n got %q\nwant %q", err, c.want)
			}
			var pe *ProfileError
			if !errors.As(err, &pe) || pe.Source != "test.json" {
				t.Errorf("error %T is not a *ProfileError for test.json", err)
			}
		})
	}
}

func TestParseProfile(t *testing.T) {
	for _, ok := range []string{"default", "strict", "unconfined", "./default", "/etc/caisson/p.json", "p.json", "dir/p"} {
		p, err := ParseProfile(ok)
		if err != nil || string(p) != ok {
			t.Errorf("ParseProfile(%q) = %q, %v", ok, p, err)
		}
	}
	for _, bad := range []string{"", "strcit", "Default", "docker"} {
		if _, err := ParseProfile(bad); err == nil || !strings.HasPrefix(err.Error(), "seccomp: ") {
			t.Errorf("ParseProfile(%q) error = %v, want a seccomp: error", bad, err)
		}
	}
	if !Profile("./x").IsFile() || Profile("strict").IsFile() {
		t.Error("IsFile is wrong")
	}
}

func TestCompileFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.json")
	if err := os.WriteFile(path, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["keyctl"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	prog, err := compileFor(archX86_64, Profile(path))
	if err != nil {
		t.Fatal(err)
	}
	if prog.Name != path {
		t.Errorf("Name = %q", prog.Name)
	}
	m := newVM(t, prog)
	if got := m.run(call{arch: archX86_64.auditArch, nr: archX86_64.table()["keyctl"]}); got != eperm {
		t.Errorf("keyctl = %s, want EPERM (errnoRet default)", retString(got))
	}
	_, err = compileFor(archX86_64, Profile(filepath.Join(dir, "missing.json")))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "seccomp: ") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := compileFor(archX86_64, "bogus"); err == nil {
		t.Error("compile of an unknown name succeeded")
	}
}
