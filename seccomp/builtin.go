package seccomp

import "golang.org/x/sys/unix"

// Built-in posture tables. Every list is documented in the package comment
// (doc.go); keep the two in sync.

// enosysCalls fail with ENOSYS in every built-in posture, so that libc and
// language runtimes fall back to older interfaces: clone3 (seccomp cannot
// inspect its flags, which live in a struct; glibc falls back to clone) and
// io_uring (its operations bypass seccomp entirely).
var enosysCalls = []string{
	"clone3",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// epermCalls fail with EPERM in every built-in posture.
var epermCalls = []string{
	// Keyrings are not namespaced.
	"keyctl", "add_key", "request_key",
	// Kernel attack surface reachable from a user namespace or unprivileged.
	"bpf", "perf_event_open", "userfaultfd",
	// Host-global operations; the kernel refuses most of them to a user
	// namespace anyway, the filter makes the refusal early and uniform.
	"kexec_load", "kexec_file_load",
	"init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "syslog",
	"iopl", "ioperm",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
	"quotactl", "quotactl_fd",
	"vhangup", "lookup_dcookie", "fanotify_init",
	// "Shocker": opens any inode of a mounted filesystem by handle.
	"open_by_handle_at",
	// NUMA memory-policy calls (Docker gates them on CAP_SYS_NICE).
	"move_pages", "mbind", "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "migrate_pages",
	// Obsolete interfaces.
	"uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "vm86", "vm86old",
	// 16-bit segments (only Wine/dosemu need it).
	"modify_ldt",
}

// defaultENOSYSCalls change a mount's attributes through a struct seccomp cannot read (clearing read-only among
// them); ENOSYS, so that mount(8) falls back to mount(2), where the read-write bind remount is refused (see
// mountRemountRW). caisson's own rootfs code falls back the same way when it runs nested.
var defaultENOSYSCalls = []string{"mount_setattr", "open_tree_attr"}

// Mount flags of mount(2)'s args[3].
const (
	msRdonly  = 0x1
	msRemount = 0x20
	msBind    = 0x1000
)

// strictENOSYSCalls is the new mount API, refused with ENOSYS in strict so
// mount(8) and friends fall back to mount(2), which strict refuses with EPERM.
var strictENOSYSCalls = []string{
	"open_tree", "open_tree_attr", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
}

// strictEPERMCalls fail with EPERM in strict only.
var strictEPERMCalls = []string{
	// Nested namespaces and mount-table changes.
	"unshare", "setns",
	"mount", "umount2", "pivot_root", "chroot",
	// Inspection and modification of other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
}

// allowedPersonalities are the personality(2) arguments the built-in postures
// accept (Docker's list): PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32
// and 0xffffffff (query the current persona).
var allowedPersonalities = []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// Socket families refused by the built-in postures with EAFNOSUPPORT.
const (
	afALG   = 38 // AF_ALG: kernel crypto API, a recurring source of CVEs
	afVSOCK = 40 // AF_VSOCK: host/VM sockets, not namespaced
)

// cloneNamespaceFlags is every CLONE_NEW* bit: CLONE_NEWNS|CLONE_NEWCGROUP|
// CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET
// (CLONE_NEWTIME, 0x80, is usable with unshare and clone3 only).
const cloneNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET // 0x7E020000

// builtinPolicy returns the policy of the default or strict posture for a.
func builtinPolicy(a *archInfo, strict bool) *policy {
	p := newPolicy(a, retAllow)
	eperm := errno(unix.EPERM)
	enosys := errno(unix.ENOSYS)

	p.add(enosys, enosysCalls)
	p.add(eperm, epermCalls)

	// Terminal injection: TIOCSTI pushes input into the controlling terminal
	// (CVE-2017-5226), TIOCLINUX can do the same on a virtual console
	// (CVE-2023-28100). The kernel reads the request as an unsigned int, so
	// only the low 32 bits are compared (CVE-2019-10063).
	p.add(eperm, []string{"ioctl"}, cond{arg: 1, op: opEQ, value: ioctlTIOCSTI, low32: true})
	p.add(eperm, []string{"ioctl"}, cond{arg: 1, op: opEQ, value: ioctlTIOCLINUX, low32: true})

	// personality(unsigned int): refuse anything but the known-safe values
	// (e.g. READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE).
	var notAllowed []cond
	for _, v := range allowedPersonalities {
		notAllowed = append(notAllowed, cond{arg: 0, op: opNE, value: v, low32: true})
	}
	p.add(eperm, []string{"personality"}, notAllowed...)

	// socket(int domain, ...).
	eafnosupport := errno(unix.EAFNOSUPPORT)
	p.add(eafnosupport, []string{"socket"}, cond{arg: 0, op: opEQ, value: afALG, low32: true})
	p.add(eafnosupport, []string{"socket"}, cond{arg: 0, op: opEQ, value: afVSOCK, low32: true})

	if !strict {
		// The sandbox's view of the host is read-only bind mounts made in its own mount namespace, which root
		// inside could otherwise make writable again: a bind remount without MS_RDONLY, or mount_setattr.
		p.add(eperm, []string{"mount"}, cond{arg: 3, op: opMaskedEQ, value: msRemount | msBind | msRdonly, datum: msRemount | msBind, low32: true})
		p.add(enosys, defaultENOSYSCalls)
	}
	if strict {
		// clone(unsigned long flags, ...): flags are args[0] on amd64 and
		// arm64 (s390 swaps the first two arguments; it is not supported).
		// The kernel keeps only the low 32 bits of clone's flags
		// (lower_32_bits(clone_flags) in kernel/fork.c), so only they are
		// compared.
		p.add(eperm, []string{"clone"}, cond{arg: 0, op: opMaskedNE, value: cloneNamespaceFlags, datum: 0, low32: true})
		p.add(enosys, strictENOSYSCalls)
		p.add(eperm, strictEPERMCalls)
	}
	return p
}

// TTYGuard compiles caisson's terminal-injection guard alone: ioctl TIOCSTI and TIOCLINUX are refused with EPERM
// (compared on the low 32 bits the kernel reads), everything else allowed. The OCI runtime stacks it under an
// engine's own profile, which decides everything else: a profile that allows ioctl wholesale, or compares the
// request as 64 bits, is not enough against CVE-2017-5226, CVE-2023-28100 and CVE-2019-10063.
func TTYGuard() (*Program, error) {
	a, err := nativeArch()
	if err != nil {
		return nil, err
	}
	p := newPolicy(a, retAllow)
	eperm := errno(unix.EPERM)
	p.add(eperm, []string{"ioctl"}, cond{arg: 1, op: opEQ, value: ioctlTIOCSTI, low32: true})
	p.add(eperm, []string{"ioctl"}, cond{arg: 1, op: opEQ, value: ioctlTIOCLINUX, low32: true})
	return finish(p, "tty-guard")
}
