//go:build linux && (amd64 || arm64)

package seccomp

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel tests never install a filter in the test process itself: they
// re-execute the test binary (TestHelperProcess, selected by helperEnv),
// which locks its thread, installs a posture and probes it.

const helperEnv = "CAISSON_SECCOMP_HELPER"

// skipOrFail skips the test, or fails it when CAISSON_TEST_STRICT=1.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CAISSON_TEST_STRICT") == "1" {
		t.Fatalf("requirement not met: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

func requireKernelSeccomp(t *testing.T) {
	t.Helper()
	if _, err := nativeArch(); err != nil {
		skipOrFail(t, "%v", err)
	}
	if err := Supported(); err != nil {
		skipOrFail(t, "%v", err)
	}
}

// runHelper runs TestHelperProcess in a child with the given mode and
// returns its output; it fails the test if the child fails.
func runHelper(t *testing.T, mode string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	t.Logf("helper %s:\n%s", mode, out)
	if err != nil {
		t.Fatalf("helper %s: %v", mode, err)
	}
	return string(out)
}

func TestKernelDefault(t *testing.T) {
	requireKernelSeccomp(t)
	out := runHelper(t, "default")
	if !strings.Contains(out, "helper: all checks passed") {
		t.Fatal("helper did not report success")
	}
}

func TestKernelStrict(t *testing.T) {
	requireKernelSeccomp(t)
	out := runHelper(t, "strict")
	if !strings.Contains(out, "helper: all checks passed") {
		t.Fatal("helper did not report success")
	}
}

// TestKernelOCIProfile loads Docker's default profile (1000+ instructions)
// to check that a large generated program is accepted and behaves.
func TestKernelOCIProfile(t *testing.T) {
	requireKernelSeccomp(t)
	path, err := filepath.Abs(filepath.Join("testdata", "moby-default.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := runHelper(t, "file:"+path)
	if !strings.Contains(out, "helper: all checks passed") {
		t.Fatal("helper did not report success")
	}
}

// TestHelperProcess is not a test: it is the child of TestKernel*.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	os.Exit(helperMain(mode))
}

// check is one probe: a syscall and the errno it must fail with (0: success).
type check struct {
	name string
	run  func() unix.Errno
	want unix.Errno
}

func sys(nr uintptr, args ...uintptr) func() unix.Errno {
	return func() unix.Errno {
		var a [6]uintptr
		copy(a[:], args)
		_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		return e
	}
}

func helperMain(mode string) int {
	if mode == "exec-child" {
		return execChild()
	}
	runtime.LockOSThread() // never unlocked: the thread dies with the process

	profile, isFile := strings.CutPrefix(mode, "file:")
	prog, err := Compile(Profile(profile))
	if err != nil {
		fmt.Println("helper:", err)
		return 2
	}
	if err := Install(prog); err != nil {
		fmt.Println("helper:", err)
		return 2
	}
	fmt.Printf("helper: installed %s\n", prog)

	devnull, err := os.Open("/dev/null")
	if err != nil {
		fmt.Println("helper:", err)
		return 2
	}
	defer devnull.Close()
	fd := devnull.Fd()
	// Heap objects do not move; keep them alive until the probes are done.
	b, termios := new(byte), new(unix.Termios)
	defer runtime.KeepAlive(b)
	defer runtime.KeepAlive(termios)
	pb, pt := uintptr(unsafe.Pointer(b)), uintptr(unsafe.Pointer(termios))

	// Each probe is chosen so the kernel's own answer (in brackets) differs
	// from the filter's.
	checks := []check{
		{"keyctl(invalid op) [EOPNOTSUPP]", sys(unix.SYS_KEYCTL, 0x7fff), unix.EPERM},
		{"add_key(NULL) [EFAULT]", sys(unix.SYS_ADD_KEY), unix.EPERM},
		{"bpf(-1) [EINVAL]", sys(unix.SYS_BPF, ^uintptr(0)), unix.EPERM},
		{"userfaultfd(-1) [EINVAL]", sys(unix.SYS_USERFAULTFD, ^uintptr(0)), unix.EPERM},
		{"clone3(NULL, 0) [EINVAL]", sys(unix.SYS_CLONE3, 0, 0), unix.ENOSYS},
		{"io_uring_setup(0, NULL) [EFAULT]", sys(unix.SYS_IO_URING_SETUP, 0, 0), unix.ENOSYS},
		{"ioctl(/dev/null, TIOCSTI) [ENOTTY]", sys(unix.SYS_IOCTL, fd, unix.TIOCSTI, pb), unix.EPERM},
		{"ioctl(/dev/null, 1<<32|TIOCSTI) [ENOTTY]", sys(unix.SYS_IOCTL, fd, 1<<32|unix.TIOCSTI, pb), unix.EPERM},
		{"ioctl(/dev/null, TIOCLINUX) [ENOTTY]", sys(unix.SYS_IOCTL, fd, unix.TIOCLINUX, pb), unix.EPERM},
		{"ioctl(/dev/null, TCGETS) allowed", sys(unix.SYS_IOCTL, fd, unix.TCGETS, pt), unix.ENOTTY},
		{"personality(0xffffffff) allowed", sys(unix.SYS_PERSONALITY, 0xffffffff), 0},
		{"personality(ADDR_NO_RANDOMIZE) [ok]", sys(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */), unix.EPERM},
		{"socket(AF_ALG) [ok or EAFNOSUPPORT]", sys(unix.SYS_SOCKET, afALG, unix.SOCK_SEQPACKET), unix.EAFNOSUPPORT},
		{"unknown syscall 1000", sys(1000), unix.ENOSYS},
		{"getpid", func() unix.Errno {
			if pid, _, _ := unix.Syscall(unix.SYS_GETPID, 0, 0, 0); int(pid) != os.Getpid() {
				return unix.EINVAL
			}
			return 0
		}, 0},
		{"socket(AF_UNIX) allowed", func() unix.Errno {
			s, _, e := unix.Syscall(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if e == 0 {
				unix.Close(int(s))
			}
			return e
		}, 0},
		{"thread-self Seccomp: 2", func() unix.Errno { return seccompMode("/proc/thread-self/status") }, 0},
		{"fork+exec of a child that inherits the filter", func() unix.Errno {
			exe, _ := os.Executable()
			cmd := exec.Command(exe, "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"=exec-child")
			out, err := cmd.CombinedOutput()
			fmt.Printf("  exec-child: %s", out)
			if err != nil {
				fmt.Printf("  exec-child: %v\n", err)
				return unix.ECHILD
			}
			return 0
		}, 0},
	}
	if isFile {
		// Docker's default profile: the generic probes that hold for it.
		var kept []check
		for _, c := range checks {
			switch c.name {
			case "keyctl(invalid op) [EOPNOTSUPP]", // not allowlisted: defaultErrnoRet 1
				"clone3(NULL, 0) [EINVAL]", // errnoRet 38
				"getpid", "socket(AF_UNIX) allowed", "thread-self Seccomp: 2",
				"fork+exec of a child that inherits the filter":
				kept = append(kept, c)
			}
		}
		checks = append(kept,
			check{"unshare(CLONE_NEWUSER) [EINVAL]", sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER), unix.EPERM},
			check{"ptrace(invalid, pid 0) allowed [ESRCH]", sys(unix.SYS_PTRACE, 0x7fffffff, 0), unix.ESRCH},
		)
	} else if runtime.GOARCH == "amd64" {
		checks = append(checks, check{"x32 getpid [ok or ENOSYS]", sys(x32SyscallBit | unix.SYS_GETPID), unix.ENOSYS})
	}
	// A multi-threaded process cannot unshare a user namespace (EINVAL)
	// and CLONE_NEWUSER|CLONE_FS is always EINVAL for clone, so EPERM can
	// only come from the filter, and no process is ever created.
	cloneNewUser := sys(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_FS|uintptr(unix.SIGCHLD))
	switch {
	case isFile:
	case mode == "strict":
		checks = append(checks,
			check{"unshare(CLONE_NEWUSER) [EINVAL]", sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER), unix.EPERM},
			check{"clone(CLONE_NEWUSER|CLONE_FS) [EINVAL]", cloneNewUser, unix.EPERM},
			check{"setns(-1, 0) [EBADF]", sys(unix.SYS_SETNS, ^uintptr(0), 0), unix.EPERM},
			check{"fsopen(NULL) [EPERM or EFAULT]", sys(unix.SYS_FSOPEN, 0, 0), unix.ENOSYS},
			check{"ptrace(invalid, pid 0) [ESRCH]", sys(unix.SYS_PTRACE, 0x7fffffff, 0), unix.EPERM},
			check{"mount(NULL...) [EFAULT or EPERM]", sys(unix.SYS_MOUNT), unix.EPERM},
		)
	default:
		checks = append(checks,
			check{"unshare(CLONE_NEWUSER) not filtered", sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER), unix.EINVAL},
			check{"clone(CLONE_NEWUSER|CLONE_FS) not filtered", cloneNewUser, unix.EINVAL},
		)
	}

	failed := 0
	for _, c := range checks {
		if got := c.run(); got != c.want {
			failed++
			fmt.Printf("FAIL %s: got %s, want %s\n", c.name, errnoName(got), errnoName(c.want))
		} else {
			fmt.Printf("ok   %s: %s\n", c.name, errnoName(got))
		}
	}
	if failed > 0 {
		fmt.Printf("helper: %d checks failed\n", failed)
		return 1
	}
	fmt.Println("helper: all checks passed")
	return 0
}

// execChild runs after fork+exec under the parent's filter.
func execChild() int {
	if e := seccompMode("/proc/self/status"); e != 0 {
		fmt.Println("not filtered after exec")
		return 1
	}
	if _, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0); e != unix.ENOSYS {
		fmt.Printf("clone3 = %s after exec, want ENOSYS\n", errnoName(e))
		return 1
	}
	fmt.Println("filter inherited")
	return 0
}

// seccompMode returns 0 if the status file says "Seccomp: 2" (filter mode).
func seccompMode(path string) unix.Errno {
	f, err := os.Open(path)
	if err != nil {
		return unix.ENOENT
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "Seccomp" {
			if strings.TrimSpace(v) == "2" {
				return 0
			}
			return unix.EINVAL
		}
	}
	return unix.ENOENT
}

func errnoName(e unix.Errno) string {
	if e == 0 {
		return "success"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}
