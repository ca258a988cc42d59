// Command probe is the static helper of caisson's hardening tests (bubblewrap's try-syscall pattern): run inside a
// sandbox, it performs system calls with invalid pointers, descriptors or flags, so that a call the seccomp filter
// allows fails in the kernel (EFAULT, EBADF, EINVAL, ...) while a filtered one fails with the filter's errno, and
// prints one "NAME ERRNO" line per call. It also measures system-call cost for tests/bench-harden.sh.
//
// Usage:
//
//	probe sys NAME...          try each named call; prints NAME ERRNO (OK on success, SKIP if unknown here)
//	probe loosen               stack an allow-all seccomp filter, then try keyctl (catalogue K22)
//	probe write-exe PATH       open PATH for writing and write one byte at offset 0 (CVE-2019-5736 check)
//	probe ids                  print the real and effective uid
//	probe connect-abstract NAME connect to the abstract UNIX socket @NAME; prints connect ERRNO
//	probe nft                  ask nf_tables for its tables over netlink (catalogue N10); prints nft ERRNO
//	probe reach-init           try to reach into init (PID 1) without stopping it: take its fd 3 (pidfd_getfd),
//	                           read its memory (process_vm_readv, /proc/1/mem), compare its files (kcmp), seize it
//	                           (PTRACE_SEIZE, undone when the probe exits); prints NAME ERRNO for each (catalogue S3)
//	probe recv-fd PATH         receive descriptors over the UNIX socket PATH (as a helper outside might hand them in)
//	                           and try to write through each one's /proc/self/fd link: reopen for appending a line
//	                           (a file), create a file beneath it (a directory); prints reopen|create ERRNO
//	probe bench-getpid N       N getpid calls; prints ns/op
//	probe bench-stat N         N stat("/") calls; prints ns/op
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/caisson-sandbox/caisson/seccomp"
	"golang.org/x/sys/unix"
)

// bad is an address that is never mapped: an allowed call reading or writing through it fails with EFAULT.
const bad = 1

// badFD is a descriptor that is never open.
const badFD = ^uintptr(0) // -1

// calls maps a probe name to the syscall and its invalid arguments.
var calls = map[string]struct {
	sys  string
	args [6]uintptr
}{
	"mount":                   {"mount", [6]uintptr{bad, bad, bad, 0, 0}},
	"umount2":                 {"umount2", [6]uintptr{bad, 0xffffffff}},
	"pivot_root":              {"pivot_root", [6]uintptr{bad, bad}},
	"chroot":                  {"chroot", [6]uintptr{bad}},
	"unshare":                 {"unshare", [6]uintptr{0xffffffff}},
	"unshare-user":            {"unshare", [6]uintptr{unix.CLONE_NEWUSER | 0x80000000}},
	"setns":                   {"setns", [6]uintptr{badFD, 0}},
	"clone-newuser":           {"clone", [6]uintptr{unix.CLONE_NEWUSER | unix.CLONE_THREAD}},
	"clone-newpid":            {"clone", [6]uintptr{unix.CLONE_NEWPID | unix.CLONE_THREAD}},
	"clone-thread":            {"clone", [6]uintptr{unix.CLONE_THREAD}},
	"clone3":                  {"clone3", [6]uintptr{bad, 88}},
	"open_tree":               {"open_tree", [6]uintptr{badFD, bad, 0}},
	"move_mount":              {"move_mount", [6]uintptr{badFD, bad, badFD, bad, 0}},
	"fsopen":                  {"fsopen", [6]uintptr{bad, 0}},
	"fsconfig":                {"fsconfig", [6]uintptr{badFD, 0, 0, 0, 0}},
	"fsmount":                 {"fsmount", [6]uintptr{badFD, 0, 0}},
	"fspick":                  {"fspick", [6]uintptr{badFD, bad, 0}},
	"mount_setattr":           {"mount_setattr", [6]uintptr{badFD, bad, 0, bad, 0}},
	"keyctl":                  {"keyctl", [6]uintptr{0xffff}},
	"add_key":                 {"add_key", [6]uintptr{bad, bad, bad, 0, 0}},
	"request_key":             {"request_key", [6]uintptr{bad, bad, bad, 0}},
	"bpf":                     {"bpf", [6]uintptr{0xffff, bad, 0}},
	"perf_event_open":         {"perf_event_open", [6]uintptr{bad, 0, badFD, badFD, 0}},
	"userfaultfd":             {"userfaultfd", [6]uintptr{0xffffffff}},
	"io_uring_setup":          {"io_uring_setup", [6]uintptr{1, bad}},
	"io_uring_enter":          {"io_uring_enter", [6]uintptr{badFD, 0, 0, 0, 0, 0}},
	"io_uring_register":       {"io_uring_register", [6]uintptr{badFD, 0, 0, 0}},
	"kexec_load":              {"kexec_load", [6]uintptr{0, 0, bad, 0xffffffff}},
	"kexec_file_load":         {"kexec_file_load", [6]uintptr{badFD, badFD, 0, bad, 0xffffffff}},
	"init_module":             {"init_module", [6]uintptr{bad, 0, bad}},
	"finit_module":            {"finit_module", [6]uintptr{badFD, bad, 0xffffffff}},
	"delete_module":           {"delete_module", [6]uintptr{bad, 0}},
	"reboot":                  {"reboot", [6]uintptr{0, 0, 0, 0}},
	"swapon":                  {"swapon", [6]uintptr{bad, 0}},
	"swapoff":                 {"swapoff", [6]uintptr{bad}},
	"acct":                    {"acct", [6]uintptr{bad}},
	"quotactl":                {"quotactl", [6]uintptr{0xffffffff, bad, 0, bad}},
	"syslog":                  {"syslog", [6]uintptr{10, 0, 0}},
	"iopl":                    {"iopl", [6]uintptr{4}},
	"ioperm":                  {"ioperm", [6]uintptr{0xffffffff, 1, 1}},
	"settimeofday":            {"settimeofday", [6]uintptr{bad, bad}},
	"clock_settime":           {"clock_settime", [6]uintptr{0xff, bad}},
	"clock_adjtime":           {"clock_adjtime", [6]uintptr{0xff, bad}},
	"adjtimex":                {"adjtimex", [6]uintptr{bad}},
	"vhangup":                 {"vhangup", [6]uintptr{}},
	"lookup_dcookie":          {"lookup_dcookie", [6]uintptr{0, bad, 0}},
	"fanotify_init":           {"fanotify_init", [6]uintptr{0xffffffff, 0}},
	"open_by_handle_at":       {"open_by_handle_at", [6]uintptr{badFD, bad, 0}},
	"ptrace":                  {"ptrace", [6]uintptr{0xffff, 0, 0, 0}},
	"ptrace-attach-init":      {"ptrace", [6]uintptr{unix.PTRACE_ATTACH, 1, 0, 0}},
	"process_vm_readv":        {"process_vm_readv", [6]uintptr{1, bad, 1, bad, 1, 0}},
	"process_vm_writev":       {"process_vm_writev", [6]uintptr{1, bad, 1, bad, 1, 0}},
	"kcmp":                    {"kcmp", [6]uintptr{1, 1, 0xff, 0, 0}},
	"pidfd_getfd":             {"pidfd_getfd", [6]uintptr{badFD, 0, 0}},
	"process_madvise":         {"process_madvise", [6]uintptr{badFD, bad, 1, 0, 0}},
	"move_pages":              {"move_pages", [6]uintptr{0, 1, bad, bad, bad, 0}},
	"mbind":                   {"mbind", [6]uintptr{0, 0, 0xff, 0, 0, 0}},
	"get_mempolicy":           {"get_mempolicy", [6]uintptr{bad, bad, 0xffff, 0, 0xffffffff}},
	"set_mempolicy":           {"set_mempolicy", [6]uintptr{0xff, 0, 0}},
	"set_mempolicy_home_node": {"set_mempolicy_home_node", [6]uintptr{0, 0, 0, 1}},
	"migrate_pages":           {"migrate_pages", [6]uintptr{0, 1, bad, bad}},
	"personality-bad":         {"personality", [6]uintptr{0x0400000}},
	"personality-query":       {"personality", [6]uintptr{0xffffffff}},
	"uselib":                  {"uselib", [6]uintptr{bad}},
	"ustat":                   {"ustat", [6]uintptr{0, bad}},
	"sysfs":                   {"sysfs", [6]uintptr{0xff, 0, 0}},
	"_sysctl":                 {"_sysctl", [6]uintptr{bad}},
	"nfsservctl":              {"nfsservctl", [6]uintptr{0, bad, bad}},
	"modify_ldt":              {"modify_ldt", [6]uintptr{0xff, 0, 0}},
	"socket-alg":              {"socket", [6]uintptr{unix.AF_ALG, unix.SOCK_SEQPACKET | unix.SOCK_CLOEXEC, 0}},
	"socket-vsock":            {"socket", [6]uintptr{unix.AF_VSOCK, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0}},
	"socket-inet":             {"socket", [6]uintptr{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0}},
	"ioctl-tiocsti":           {"ioctl", [6]uintptr{badFD, unix.TIOCSTI, bad}},
	"ioctl-tiocsti-hi":        {"ioctl", [6]uintptr{badFD, 1<<32 | unix.TIOCSTI, bad}},
	"ioctl-tioclinux":         {"ioctl", [6]uintptr{badFD, unix.TIOCLINUX, bad}},
	"ioctl-tcgets":            {"ioctl", [6]uintptr{badFD, unix.TCGETS, bad}},
	"getpid":                  {"getpid", [6]uintptr{}},
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe sys NAME... | loosen | write-exe PATH | ids | connect-abstract NAME | reach-init | nft | recv-fd PATH | bench-getpid N | bench-stat N")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sys":
		for _, name := range os.Args[2:] {
			fmt.Println(name, try(name))
		}
	case "loosen":
		loosen()
	case "write-exe":
		writeExe(os.Args[2])
	case "ids":
		fmt.Println(unix.Getuid(), unix.Geteuid())
	case "connect-abstract":
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + os.Args[2]})
		}
		if err != nil {
			fmt.Println("connect", errName(err.(unix.Errno)))
			return
		}
		fmt.Println("connect OK")
	case "reach-init":
		reachInit()
	case "nft":
		fmt.Println("nft", nftTables())
	case "recv-fd":
		recvFD(os.Args[2])
	case "bench-getpid", "bench-stat":
		n, err := strconv.Atoi(os.Args[2])
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "probe: want a positive count")
			os.Exit(2)
		}
		fmt.Printf("%s %.1f ns/op\n", os.Args[1], bench(os.Args[1], n))
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// try performs the named call and returns its errno name, OK, or SKIP when this architecture lacks it.
func try(name string) string {
	c, ok := calls[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "probe: unknown call %q\n", name)
		os.Exit(2)
	}
	nr, ok := seccomp.SyscallNumber(c.sys)
	if !ok {
		return "SKIP"
	}
	a := c.args
	_, _, e := unix.RawSyscall6(uintptr(nr), a[0], a[1], a[2], a[3], a[4], a[5])
	return errName(e)
}

func errName(e unix.Errno) string {
	if e == 0 {
		return "OK"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno" + strconv.Itoa(int(e))
}

// loosen stacks a filter that allows everything (possible under no_new_privs), then tries keyctl and reports
// whether the installed filter still refuses it.
func loosen() {
	allow := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
	prog := unix.SockFprog{Len: 1, Filter: &allow[0]}
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	fmt.Println("stack-allow", errName(e))
	_, _, e = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, 0, 0)
	fmt.Println("prctl-seccomp-disable", errName(e))
	fmt.Println("keyctl", try("keyctl"))
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
			fmt.Println("Seccomp:", strings.TrimSpace(v))
		}
	}
}

// writeExe opens path for writing and writes one byte at offset 0; it prints open ERRNO and write ERRNO.
func writeExe(path string) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Println("open", errName(err.(unix.Errno)))
		return
	}
	fmt.Println("open OK")
	_, err = unix.Pwrite(fd, []byte{0}, 0)
	if err != nil {
		fmt.Println("write", errName(err.(unix.Errno)))
		return
	}
	fmt.Println("write OK")
}

// bench runs n iterations of a cheap system call and returns the mean cost in ns.
func bench(what string, n int) float64 {
	var st unix.Stat_t
	start := time.Now()
	for i := 0; i < n; i++ {
		if what == "bench-getpid" {
			unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0)
		} else if err := unix.Stat("/", &st); err != nil {
			fmt.Fprintln(os.Stderr, "probe: stat /:", err)
			os.Exit(1)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// reachInit tries what a process holding CAP_SYS_PTRACE over init's user namespace could do to init (catalogue
// S3), none of which stops it, and prints one "NAME ERRNO" line per attempt (OK when it succeeded).
func reachInit() {
	result := func(name string, err error) {
		if err == nil {
			fmt.Println(name, "OK")
			return
		}
		if e, ok := err.(unix.Errno); ok {
			fmt.Println(name, errName(e))
			return
		}
		fmt.Println(name, err)
	}
	pidfd, err := unix.PidfdOpen(1, 0)
	if err != nil {
		result("pidfd_open-init", err)
	} else {
		fd, err := unix.PidfdGetfd(pidfd, 3, 0)
		if err == nil {
			unix.Close(fd)
		}
		result("pidfd_getfd-init", err)
	}
	buf := make([]byte, 8)
	// Any address: without the right the kernel answers EPERM before it looks at init's memory (EFAULT or OK with it).
	_, err = unix.ProcessVMReadv(1, []unix.Iovec{{Base: &buf[0], Len: 8}}, []unix.RemoteIovec{{Base: 0x400000, Len: 8}}, 0)
	result("process_vm_readv-init", err)
	f, err := os.Open("/proc/1/mem")
	if err == nil {
		f.Close()
	} else if pe, ok := err.(*os.PathError); ok {
		err = pe.Err
	}
	result("open-proc1-mem", err)
	_, _, e := unix.Syscall6(unix.SYS_KCMP, 1, uintptr(os.Getpid()), 0 /* KCMP_FILE */, 3, 0, 0)
	if e != 0 {
		result("kcmp-init", e)
	} else {
		result("kcmp-init", nil)
	}
	result("ptrace-seize-init", unix.PtraceSeize(1))
}

// nftTables sends nf_tables a dump request for its tables (NFT_MSG_GETTABLE) over NETLINK_NETFILTER and returns
// OK when it answered, or the errno it (or the socket call) gave: EPERM without CAP_NET_ADMIN over the network
// namespace.
func nftTables() string {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return errName(err.(unix.Errno))
	}
	defer unix.Close(fd)
	const nfnlSubsysNftables, nftMsgGettable = 10, 1
	msg := make([]byte, unix.NLMSG_HDRLEN+4)
	*(*unix.NlMsghdr)(unsafe.Pointer(&msg[0])) = unix.NlMsghdr{
		Len:   uint32(len(msg)),
		Type:  nfnlSubsysNftables<<8 | nftMsgGettable,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP | unix.NLM_F_ACK,
		Seq:   1,
	}
	msg[unix.NLMSG_HDRLEN] = unix.AF_UNSPEC // nfgenmsg: family, version 0, resource id 0
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return errName(err.(unix.Errno))
	}
	buf := make([]byte, 65536)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return errName(err.(unix.Errno))
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil || len(msgs) == 0 {
		return "EBADMSG"
	}
	if m := msgs[0]; m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
		if code := int32(*(*uint32)(unsafe.Pointer(&m.Data[0]))); code != 0 {
			return errName(unix.Errno(-code))
		}
	}
	return "OK"
}

// recvFD receives descriptors over the UNIX socket at path and, for each, tries to write to the host object it
// names through its magic link: a file is reopened for appending a line, a directory gets a new file "pwned".
func recvFD(path string) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	}
	if err != nil {
		fmt.Println("connect", errName(err.(unix.Errno)))
		return
	}
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		fmt.Println("recvmsg", errName(err.(unix.Errno)))
		return
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		fds, _ := unix.ParseUnixRights(&m)
		for _, got := range fds {
			var st unix.Stat_t
			if err := unix.Fstat(got, &st); err != nil {
				fmt.Println("fstat", errName(err.(unix.Errno)))
				continue
			}
			link := fmt.Sprintf("/proc/self/fd/%d", got)
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				nfd, err := unix.Open(link+"/pwned", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
				fmt.Println("create", result(err))
				if err == nil {
					unix.Close(nfd)
				}
				continue
			}
			nfd, err := unix.Open(link, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
			if err == nil {
				_, err = unix.Write(nfd, []byte("pwned\n"))
				unix.Close(nfd)
			}
			fmt.Println("reopen", result(err))
		}
	}
}

// result is OK or the errno's name.
func result(err error) string {
	if err == nil {
		return "OK"
	}
	if e, ok := err.(unix.Errno); ok {
		return errName(e)
	}
	return err.Error()
}
