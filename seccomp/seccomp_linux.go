package seccomp

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Install sets PR_SET_NO_NEW_PRIVS and loads prog on the calling OS thread
// only, with seccomp(SECCOMP_SET_MODE_FILTER, 0, ...) (no
// SECCOMP_FILTER_FLAG_TSYNC). A nil or empty program (Unconfined) is a no-op
// and does not set no_new_privs either.
//
// Preconditions: the calling goroutine must be locked to its OS thread with
// runtime.LockOSThread, and must stay locked until it has forked and exec'd
// the payload from that same thread, which inherits the filter and
// no_new_privs through fork and execve (other threads of the Go process are
// not filtered). It must then never call runtime.UnlockOSThread: a goroutine
// that exits while locked takes its thread with it, while an unlocked
// filtered thread would go back to the scheduler and run arbitrary goroutines
// under the filter. Install should be the last step before exec: once the
// strict posture is loaded, the thread can no longer create namespaces or
// mount, and in every posture clone3 fails with ENOSYS, so exec.Cmd must not
// need it (SysProcAttr.UseCgroupFD and CLONE_NEWTIME make Go use clone3).
//
// Filters stack: a filter cannot be removed or loosened once installed.
func Install(prog *Program) error {
	if prog == nil || len(prog.Filter) == 0 {
		return nil
	}
	if len(prog.Filter) > maxInsns {
		return fmt.Errorf("seccomp: install %s: program has %d instructions, the kernel accepts at most %d", prog.Name, len(prog.Filter), maxInsns)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if err := setFilter(prog.Filter, uintptr(prog.Flags)); err != nil {
		msg := fmt.Sprintf("seccomp: install %s: seccomp(SECCOMP_SET_MODE_FILTER)", prog.Name)
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%s: %w (hint: the kernel may lack CONFIG_SECCOMP_FILTER; check for a \"Seccomp:\" line in /proc/self/status)", msg, err)
		}
		return fmt.Errorf("%s: %w", msg, err)
	}
	return nil
}

// Supported reports whether the running kernel can load seccomp filters,
// without loading one. The error says why not.
func Supported() error {
	if err := probeFilterSupport(); err != nil {
		switch {
		case errors.Is(err, unix.EINVAL):
			return fmt.Errorf("seccomp: kernel does not support seccomp filters (CONFIG_SECCOMP_FILTER unset): %w", err)
		case errors.Is(err, unix.ENOSYS):
			return fmt.Errorf("seccomp: kernel has no seccomp(2) system call (Linux 3.17+ required): %w", err)
		}
		return fmt.Errorf("seccomp: probing seccomp(2): %w", err)
	}
	return nil
}

// Load loads prog on the calling OS thread like Install, without setting no_new_privs: the caller must hold
// CAP_SYS_ADMIN in its user namespace (or have set no_new_privs itself). The OCI runtime uses it for a process
// whose config does not ask for no_new_privs (its set-user-ID programs keep working). Same preconditions as
// Install.
func Load(prog *Program) error {
	if prog == nil || len(prog.Filter) == 0 {
		return nil
	}
	if len(prog.Filter) > maxInsns {
		return fmt.Errorf("seccomp: load %s: program has %d instructions, the kernel accepts at most %d", prog.Name, len(prog.Filter), maxInsns)
	}
	if err := setFilter(prog.Filter, uintptr(prog.Flags)); err != nil {
		return fmt.Errorf("seccomp: load %s: %w", prog.Name, err)
	}
	return nil
}
