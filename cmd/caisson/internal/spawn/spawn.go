// Package spawn starts a process in new namespaces, a new user namespace among them, the way vfork does: the child
// shares this process's memory until it executes its program, so that nothing of this process's address space is
// copied (issue 14).
//
// The Go standard library creates a child with CLONE_VM|CLONE_VFORK, which costs almost nothing, except when the
// child gets a new user namespace: then syscall.ForkExec makes a full copy of the process (its page tables, and
// afterwards a copy-on-write fault for every page this process writes again), because its child may have to wait
// for this process to write its ID maps, which a parent suspended by CLONE_VFORK could not do. caisson's init never
// waits for its maps before it executes: it keeps its capabilities across the execve as ambient ones. Measured
// here, the full copy cost the supervising caisson a fifth of its CPU per sandbox (136 page faults per start).
//
// On amd64 the child is a few instructions of assembly (spawn_linux_amd64.s) that make no call and touch no stack,
// so that the parent, suspended meanwhile on the same stack, resumes intact: it resets the signal handlers, restores
// the signal mask, places the descriptors, raises the ambient capabilities and executes the program; a failing step
// leaves its errno in memory the parent reads. Elsewhere Start uses syscall.ForkExec.
package spawn

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Attr describes the process Start creates.
type Attr struct {
	// Path is the program, Args its argv (Args[0] included), Env its environment.
	Path string
	Args []string
	Env  []string
	// Files are descriptors of this process that become the child's 0, 1, 2, ... in order; every other
	// descriptor of the child is closed by its close-on-exec flag (Go opens every descriptor with it).
	Files []int
	// Cloneflags are the CLONE_NEW* flags of the namespaces the child is created in.
	Cloneflags uintptr
	// AmbientCaps are raised in the child before it executes Path, which it then keeps across the execve even
	// though its user id is not mapped yet in a new user namespace.
	AmbientCaps []uintptr
	// CgroupFD, when UseCgroupFD is set, is the directory of the cgroup the child is created in.
	UseCgroupFD bool
	CgroupFD    int
	// ReadOnlyExec executes Path from a read-only bind of it that the child makes in its new mount namespace and
	// leaves detached (open_tree with OPEN_TREE_CLONE, mount_setattr, execveat): the child's /proc/PID/exe then
	// refers to a file on a read-only mount, which no one can open for writing through that link, even once the
	// child has exited (CVE-2019-5736), without a copy of the file. Needs new user and mount namespaces and
	// ReadOnlyExecSupported; a kernel or a policy that refuses it gives a *StepError for which ReadOnlyExecRefused
	// is true.
	ReadOnlyExec bool
}

// ReadOnlyExecRefused reports whether err is the refusal of Attr.ReadOnlyExec's bind (not of the execution).
func ReadOnlyExecRefused(err error) bool {
	var se *StepError
	return errors.As(err, &se) && readOnlyExecStep(se.Step)
}

// StepError is a failure of the child before it executed its program: which step, and the error number.
type StepError struct {
	Step string
	Err  syscall.Errno
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }

// Unwrap returns the error number.
func (e *StepError) Unwrap() error { return e.Err }

// Start creates the process and returns its PID. Errors are a *StepError, or the error number of the clone
// itself (a refused namespace: EPERM, ENOSPC, EUSERS...). The caller reaps the child.
//
// Preconditions: when the child must die with its parent (PR_SET_PDEATHSIG, which the child arms itself), the
// calling goroutine is locked to a thread that outlives the child, as the parent-death signal follows the thread.
func Start(a *Attr) (int, error) {
	return start(a)
}

// forkExec is the standard library's path.
func forkExec(a *Attr) (int, error) {
	files := make([]uintptr, len(a.Files))
	for i, fd := range a.Files {
		files[i] = uintptr(fd)
	}
	return syscall.ForkExec(a.Path, a.Args, &syscall.ProcAttr{Env: a.Env, Files: files, Sys: &syscall.SysProcAttr{
		Cloneflags: a.Cloneflags, AmbientCaps: a.AmbientCaps, UseCgroupFD: a.UseCgroupFD, CgroupFD: a.CgroupFD,
	}})
}

// Reap waits for the child pid to exit and returns its status.
func Reap(pid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			return ws, err
		}
	}
}
