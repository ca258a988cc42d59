// Package seccomp generates, in pure Go, the classic-BPF seccomp filter of a
// caisson sandbox and installs it on the thread that will exec the payload.
//
// It needs neither cgo nor libseccomp. Syscall numbers come from tables
// generated from golang.org/x/sys/unix (zsyscalls_*.go, see internal/gen);
// amd64 and arm64 are supported, Compile fails on other architectures. The
// generated code assumes a little-endian machine.
//
// # Profiles
//
// A Profile is "default", "strict", "unconfined" or the path of an OCI/Docker
// JSON profile (see ParseProfile). Every program, built-in or from a file,
// starts with the same prefix:
//
//   - a syscall from any ABI other than the native one (seccomp_data.arch !=
//     AUDIT_ARCH_X86_64 or AUDIT_ARCH_AARCH64) kills the process
//     (SECCOMP_RET_KILL_PROCESS). This covers `int $0x80` i386 calls from a
//     64-bit process and AArch32 calls; it means 32-bit binaries cannot run.
//     Killing was chosen over an errno because a program using a foreign ABI
//     is either an exploit or will not cope with a failing syscall anyway.
//   - x32 syscalls (amd64, nr & 0x40000000) fail with ENOSYS.
//   - numbers above the highest one in the table fail with ENOSYS: the
//     filter cannot judge calls newer than itself, and ENOSYS makes libcs
//     fall back to older interfaces.
//
// The default posture then applies (everything else is allowed):
//
//	ENOSYS  clone3 (its flags are in memory seccomp cannot read; glibc and
//	        Go fall back to clone), io_uring_setup, io_uring_enter,
//	        io_uring_register (io_uring operations bypass seccomp)
//	EPERM   keyctl add_key request_key bpf perf_event_open userfaultfd
//	        kexec_load kexec_file_load init_module finit_module
//	        delete_module reboot swapon swapoff acct syslog iopl ioperm
//	        settimeofday clock_settime clock_adjtime adjtimex stime
//	        quotactl quotactl_fd vhangup lookup_dcookie fanotify_init
//	        open_by_handle_at move_pages mbind get_mempolicy set_mempolicy
//	        set_mempolicy_home_node migrate_pages uselib ustat sysfs _sysctl
//	        nfsservctl vm86 vm86old modify_ldt
//	EPERM   ioctl with request TIOCSTI or TIOCLINUX, comparing only the low
//	        32 bits of args[1] (the kernel ignores the high bits)
//	EPERM   personality(x) unless the low 32 bits of x are 0, 8, 0x20000,
//	        0x20008 or 0xffffffff
//	EAFNOSUPPORT  socket(AF_ALG) and socket(AF_VSOCK); this is the errno of
//	        a kernel built without the family, which programs handle
//
// Names a table lacks are skipped (vm86, vm86old and stime exist on i386
// only; arm64 also lacks iopl, ioperm, modify_ldt, uselib, ustat, sysfs,
// _sysctl and a few more), and are listed in Program.Skipped.
//
// Notes on the EPERM list: adjtimex and clock_adjtime are refused even for
// read-only queries (modes == 0, e.g. glibc's ntp_gettime), since the filter
// cannot read the struct and the kernel refuses clock changes from a user
// namespace anyway; Docker allows both. The NUMA calls are refused as in
// Docker without CAP_SYS_NICE; programs using libnuma see EPERM and run
// without NUMA placement. fanotify_init, quotactl, quotactl_fd, vhangup and
// lookup_dcookie are refused as in Docker without capabilities. modify_ldt
// breaks 16-bit code (Wine, dosemu) only. _sysctl, nfsservctl and
// lookup_dcookie no longer exist in current kernels and get EPERM for
// uniformity.
//
// The default posture deliberately allows mount, umount2, pivot_root,
// chroot, unshare, setns, clone with CLONE_NEW* flags and ptrace: root in
// the sandbox keeps its namespaced capabilities (caisson's default posture
// leaves out CAP_SYS_PTRACE, so ptrace reaches only the command's own
// processes), so mount, sethostname,
// `ip link` and nested `unshare` keep working for teaching exercises. It
// refuses only what would make the read-only view of the host writable:
//
//	EPERM   mount(2) whose flags (low 32 bits of args[3]) have MS_REMOUNT and
//	        MS_BIND without MS_RDONLY (a bind remount to read-write)
//	ENOSYS  mount_setattr open_tree_attr (they can clear MOUNT_ATTR_RDONLY,
//	        in a struct the filter cannot read; mount(8) falls back to mount(2))
//
// The strict posture, for untrusted code, is default plus:
//
//	EPERM   clone whose flags (low 32 bits of args[0]) contain any CLONE_NEW*
//	        bit (mask 0x7E020000); threads and fork still work
//	EPERM   unshare setns mount umount2 pivot_root chroot
//	EPERM   ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd
//	        process_madvise
//	ENOSYS  open_tree open_tree_attr move_mount fsopen fsconfig fsmount
//	        fspick mount_setattr (the new mount API; ENOSYS, as in Flatpak,
//	        makes mount(8) fall back to mount(2), which then fails with EPERM)
//
// Unconfined installs nothing.
//
// # JSON profiles
//
// CompileOCI (and Compile for a file profile) accepts the runtime-spec
// LinuxSeccomp JSON and Docker's superset (moby/profiles default.json):
// defaultAction, defaultErrnoRet, architectures or archMap, flags, and
// syscalls[] with names (or Docker's old single name), action, errnoRet,
// args[] {index, value, valueTwo, op}, includes and excludes.
//
//   - Actions: SCMP_ACT_ALLOW; SCMP_ACT_ERRNO (errnoRet, default EPERM,
//     at most 4095); SCMP_ACT_KILL and SCMP_ACT_KILL_THREAD (kill the
//     thread, as libseccomp does); SCMP_ACT_KILL_PROCESS; SCMP_ACT_TRAP;
//     SCMP_ACT_LOG; SCMP_ACT_TRACE (errnoRet is the tracer's data; without a
//     tracer the call fails with ENOSYS). SCMP_ACT_NOTIFY is an error.
//   - Operators: SCMP_CMP_EQ NE LT LE GT GE and MASKED_EQ (value is the
//     mask, valueTwo the expected result), on all 64 bits, unsigned.
//   - Conditions of one rule are ANDed; if the same argument index appears
//     twice, each condition becomes a rule of its own (ORed), like runc.
//   - When several rules of one syscall match, the strictest action wins, in
//     the kernel's order for stacked filters: KILL_PROCESS, KILL_THREAD,
//     TRAP, ERRNO, TRACE, LOG, ALLOW; ties go to the first rule.
//   - Syscall names the native table lacks are skipped (listed in
//     Program.Skipped). Malformed input (unknown action, operator,
//     architecture or flag, an argument index above 5, errnoRet with an
//     action other than ERRNO/TRACE, ...) is a *ProfileError naming the JSON
//     path, e.g. `syscalls[3].action: unknown action "SCMP_ACT_FOO"`.
//   - Only the native ABI is filtered: architectures, archMap and flags are
//     validated and otherwise ignored; the prefix above still kills foreign
//     ABIs and refuses x32 and unknown numbers with ENOSYS.
//   - Docker includes/excludes: the sandbox grants no capabilities, so a
//     rule with includes.caps never applies and excludes.caps never
//     excludes; arches are matched against Docker's name for the native
//     architecture ("amd64", "arm64"); minKernel is assumed to be satisfied,
//     keeping Compile independent of the running kernel.
//
// # Installing
//
// Install sets no_new_privs and loads the program on the calling thread only
// (no TSYNC); see its preconditions. Supported probes kernel support without
// loading anything.
package seccomp
