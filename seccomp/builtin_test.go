package seccomp

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// The expected rules, written out independently of builtin.go.
var (
	wantENOSYS = []string{"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}
	wantEPERM  = []string{
		"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"reboot", "swapon", "swapoff", "acct", "syslog", "iopl", "ioperm",
		"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "open_by_handle_at",
		"move_pages", "mbind", "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "migrate_pages",
		"uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "modify_ldt",
		"lookup_dcookie", "vhangup", "quotactl", "quotactl_fd", "fanotify_init",
	}
	wantDefaultENOSYS = []string{"mount_setattr", "open_tree_attr"}
	wantStrictENOSYS  = []string{"open_tree", "open_tree_attr", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"}
	wantStrictEPERM   = []string{
		"unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
		"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
	}
	// Calls with argument rules, and calls that must stay allowed in default.
	argCalls    = []string{"ioctl", "personality", "socket", "clone", "mount"}
	mustAllowed = []string{
		"read", "write", "execve", "openat", "mmap", "clone", "fork", "vfork", "wait4", "exit_group",
		"mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "sethostname", "ptrace",
		"seccomp", "prctl", "rt_sigreturn", "futex", "rseq", "open_tree", "fsopen", "socket", "ioctl",
	}
)

var (
	allow        = uint32(retAllow)
	eperm        = errno(unix.EPERM)
	enosys       = errno(unix.ENOSYS)
	eafnosupport = errno(unix.EAFNOSUPPORT)
	kill         = uint32(retKillProcess)
)

var testArches = []*archInfo{archX86_64, archAArch64}

func compileT(t *testing.T, a *archInfo, p Profile) *vm {
	t.Helper()
	prog, err := compileFor(a, p)
	if err != nil {
		t.Fatalf("compile %s for %s: %v", p, a.goarch, err)
	}
	return newVM(t, prog)
}

func nr(t *testing.T, a *archInfo, name string) uint32 {
	t.Helper()
	n, ok := a.table()[name]
	if !ok {
		t.Fatalf("%s: no syscall %q", a.goarch, name)
	}
	return n
}

// TestEverySyscall runs every number in the table, plus a few above it, with
// zero arguments through both postures and compares with the expected lists.
func TestEverySyscall(t *testing.T) {
	for _, a := range testArches {
		for _, p := range []Profile{Default, Strict} {
			t.Run(a.goarch+"/"+string(p), func(t *testing.T) {
				v := compileT(t, a, p)
				expect := map[string]uint32{}
				set := func(ret uint32, names []string) {
					for _, n := range names {
						expect[n] = ret
					}
				}
				set(enosys, wantENOSYS)
				set(eperm, wantEPERM)
				if p == Default {
					set(enosys, wantDefaultENOSYS)
				}
				if p == Strict {
					set(enosys, wantStrictENOSYS)
					set(eperm, wantStrictEPERM)
				}
				for name, n := range a.table() {
					want, ok := expect[name]
					if !ok {
						want = allow // includes ioctl(0,0), personality(0), socket(0), clone(0)
					}
					if got := v.run(call{arch: a.auditArch, nr: n}); got != want {
						t.Errorf("%s(0...) = %s, want %s", name, retString(got), retString(want))
					}
				}
				for _, n := range []uint32{a.highest() + 1, a.highest() + 100, 1000, 0x3fffffff, 0xffffffff} {
					if got := v.run(call{arch: a.auditArch, nr: n}); got != enosys {
						t.Errorf("unknown nr %d = %s, want ENOSYS", n, retString(got))
					}
				}
				if p == Default {
					for _, name := range mustAllowed {
						n, ok := a.table()[name]
						if !ok {
							continue // fork, vfork: amd64 only
						}
						if got := v.run(call{arch: a.auditArch, nr: n}); got != allow {
							t.Errorf("%s = %s, want ALLOW in default", name, retString(got))
						}
					}
				}
			})
		}
	}
}

// TestListsMatchTables makes sure every expected name exists on amd64 (so a
// typo cannot silently drop a rule) and that the package lists equal the test's.
func TestListsMatchTables(t *testing.T) {
	for _, n := range slices.Concat(wantENOSYS, wantEPERM, wantStrictENOSYS, wantStrictEPERM, argCalls) {
		if _, ok := archX86_64.table()[n]; !ok {
			t.Errorf("amd64 table has no %q", n)
		}
	}
	same := func(what string, got, want []string) {
		got, want = slices.Clone(got), slices.Clone(want)
		got = slices.DeleteFunc(got, func(s string) bool { return s == "stime" || s == "vm86" || s == "vm86old" })
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s list = %v, want %v", what, got, want)
		}
	}
	same("ENOSYS", enosysCalls, wantENOSYS)
	same("EPERM", epermCalls, wantEPERM)
	same("strict ENOSYS", strictENOSYSCalls, wantStrictENOSYS)
	same("strict EPERM", strictEPERMCalls, wantStrictEPERM)
}

func TestPrefix(t *testing.T) {
	for _, a := range testArches {
		for _, p := range []Profile{Default, Strict} {
			v := compileT(t, a, p)
			read := nr(t, a, "read")
			cases := []struct {
				name string
				c    call
				want uint32
			}{
				{"native read", call{arch: a.auditArch, nr: read}, allow},
				{"i386 (int 0x80) read", call{arch: unix.AUDIT_ARCH_I386, nr: 3}, kill},
				{"i386 nr 0", call{arch: unix.AUDIT_ARCH_I386, nr: 0}, kill},
				{"arm (AArch32)", call{arch: unix.AUDIT_ARCH_ARM, nr: 3}, kill},
				{"other 64-bit arch", call{arch: otherArch(a), nr: read}, kill},
				{"arch 0", call{arch: 0, nr: read}, kill},
				{"unknown nr max+1", call{arch: a.auditArch, nr: a.highest() + 1}, enosys},
				{"nr -1", call{arch: a.auditArch, nr: 0xffffffff}, enosys},
				{"clone3", call{arch: a.auditArch, nr: nr(t, a, "clone3")}, enosys},
			}
			if a.x32 {
				cases = append(cases,
					struct {
						name string
						c    call
						want uint32
					}{"x32 read", call{arch: a.auditArch, nr: x32SyscallBit | 0}, enosys},
					struct {
						name string
						c    call
						want uint32
					}{"x32 execve", call{arch: a.auditArch, nr: x32SyscallBit | 520}, enosys},
				)
			}
			for _, tc := range cases {
				if got := v.run(tc.c); got != tc.want {
					t.Errorf("%s/%s: %s = %s, want %s", a.goarch, p, tc.name, retString(got), retString(tc.want))
				}
			}
		}
	}
}

func otherArch(a *archInfo) uint32 {
	if a == archX86_64 {
		return unix.AUDIT_ARCH_AARCH64
	}
	return unix.AUDIT_ARCH_X86_64
}

func TestArgumentRules(t *testing.T) {
	const (
		tcgets      = 0x5401
		hi          = 1 << 32
		cloneThread = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
			unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS |
			unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
		goFork = unix.CLONE_VFORK | unix.CLONE_VM | unix.CLONE_PIDFD | uint64(unix.SIGCHLD)
	)
	type tc struct {
		call        string
		args        [6]uint64
		def, strict uint32
	}
	cases := []tc{
		{"ioctl", [6]uint64{1, ioctlTIOCSTI}, eperm, eperm},
		{"ioctl", [6]uint64{1, hi | ioctlTIOCSTI}, eperm, eperm},
		{"ioctl", [6]uint64{1, 0xffffffff00000000 | ioctlTIOCSTI}, eperm, eperm},
		{"ioctl", [6]uint64{0xffffffff, ioctlTIOCSTI, 0xdead}, eperm, eperm},
		{"ioctl", [6]uint64{1, ioctlTIOCLINUX}, eperm, eperm},
		{"ioctl", [6]uint64{1, hi | ioctlTIOCLINUX}, eperm, eperm},
		{"ioctl", [6]uint64{1, tcgets}, allow, allow},
		{"ioctl", [6]uint64{1, hi | tcgets}, allow, allow},
		{"ioctl", [6]uint64{1, ioctlTIOCSTI + 1}, allow, allow},
		{"ioctl", [6]uint64{ioctlTIOCSTI, 0}, allow, allow}, // request in the wrong argument

		{"personality", [6]uint64{0}, allow, allow},
		{"personality", [6]uint64{8}, allow, allow},
		{"personality", [6]uint64{0x20000}, allow, allow},
		{"personality", [6]uint64{0x20008}, allow, allow},
		{"personality", [6]uint64{0xffffffff}, allow, allow},
		{"personality", [6]uint64{hi | 8}, allow, allow},    // the kernel sees 8
		{"personality", [6]uint64{0x0040000}, eperm, eperm}, // ADDR_NO_RANDOMIZE
		{"personality", [6]uint64{0x0400000}, eperm, eperm}, // READ_IMPLIES_EXEC
		{"personality", [6]uint64{0xfffffffe}, eperm, eperm},
		{"personality", [6]uint64{1}, eperm, eperm},

		// mount(2): a bind remount to read-write is refused in default, everything else allowed (strict refuses
		// mount altogether).
		{"mount", [6]uint64{0, 0, 0, unix.MS_REMOUNT | unix.MS_BIND}, eperm, eperm},
		{"mount", [6]uint64{0, 0, 0, unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV}, eperm, eperm},
		{"mount", [6]uint64{0, 0, 0, hi | unix.MS_REMOUNT | unix.MS_BIND}, eperm, eperm},
		{"mount", [6]uint64{0, 0, 0, 0xC0ED0000 | unix.MS_REMOUNT | unix.MS_BIND}, eperm, eperm}, // MS_MGC_VAL
		{"mount", [6]uint64{0, 0, 0, unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY}, allow, eperm},
		{"mount", [6]uint64{0, 0, 0, unix.MS_REMOUNT}, allow, eperm}, // superblock: the kernel checks its owner
		{"mount", [6]uint64{0, 0, 0, unix.MS_BIND | unix.MS_REC}, allow, eperm},
		{"mount", [6]uint64{0, 0, 0, unix.MS_NOSUID | unix.MS_NODEV}, allow, eperm},
		{"mount", [6]uint64{0, 0, 0, unix.MS_REC | unix.MS_PRIVATE}, allow, eperm},

		{"socket", [6]uint64{afALG, unix.SOCK_SEQPACKET}, eafnosupport, eafnosupport},
		{"socket", [6]uint64{afVSOCK, unix.SOCK_STREAM}, eafnosupport, eafnosupport},
		{"socket", [6]uint64{hi | afALG}, eafnosupport, eafnosupport},
		{"socket", [6]uint64{unix.AF_UNIX, unix.SOCK_STREAM}, allow, allow},
		{"socket", [6]uint64{unix.AF_INET, unix.SOCK_DGRAM}, allow, allow},
		{"socket", [6]uint64{unix.AF_INET6, unix.SOCK_STREAM}, allow, allow},
		{"socket", [6]uint64{unix.AF_NETLINK, unix.SOCK_RAW}, allow, allow},
		{"socket", [6]uint64{39, unix.SOCK_STREAM}, allow, allow}, // AF_NFC
		{"socket", [6]uint64{2, afALG}, allow, allow},

		{"clone", [6]uint64{unix.CLONE_NEWUSER}, allow, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, allow, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWNS}, allow, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWCGROUP}, allow, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWUTS}, allow, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWIPC}, allow, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWPID}, allow, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWNET}, allow, eperm},
		{"clone", [6]uint64{hi | unix.CLONE_NEWNET}, allow, eperm},
		{"clone", [6]uint64{cloneThread}, allow, allow},
		{"clone", [6]uint64{goFork}, allow, allow},
		{"clone", [6]uint64{uint64(unix.SIGCHLD)}, allow, allow},
		{"clone", [6]uint64{hi}, allow, allow},                       // high word is ignored by the kernel
		{"clone", [6]uint64{0, unix.CLONE_NEWUSER}, allow, allow},    // s390 order is not ours
		{"clone", [6]uint64{0x80 /* CLONE_NEWTIME */}, allow, allow}, // clone ignores it (CSIGNAL)

		{"unshare", [6]uint64{unix.CLONE_NEWUSER}, allow, eperm},
		{"unshare", [6]uint64{unix.CLONE_FILES}, allow, eperm},
		{"setns", [6]uint64{3, 0}, allow, eperm},
		{"mount", [6]uint64{}, allow, eperm},
		{"fsopen", [6]uint64{}, allow, enosys},
		{"ptrace", [6]uint64{unix.PTRACE_ATTACH, 1}, allow, eperm},
		{"read", [6]uint64{0, 0, 1}, allow, allow},
		{"write", [6]uint64{1, 0, 1}, allow, allow},
		{"execve", [6]uint64{}, allow, allow},
		{"keyctl", [6]uint64{}, eperm, eperm},
		{"clone3", [6]uint64{}, enosys, enosys},
	}
	for _, a := range testArches {
		def, strict := compileT(t, a, Default), compileT(t, a, Strict)
		for _, c := range cases {
			in := call{arch: a.auditArch, nr: nr(t, a, c.call), args: c.args}
			if got := def.run(in); got != c.def {
				t.Errorf("%s default: %s(%#x) = %s, want %s", a.goarch, c.call, c.args, retString(got), retString(c.def))
			}
			if got := strict.run(in); got != c.strict {
				t.Errorf("%s strict: %s(%#x) = %s, want %s", a.goarch, c.call, c.args, retString(got), retString(c.strict))
			}
		}
	}
}
