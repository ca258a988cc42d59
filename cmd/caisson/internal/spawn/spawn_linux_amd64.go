package spawn

import (
	"errors"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// cloneArgs is the kernel's struct clone_args (clone3), used when the child is created in a cgroup.
type cloneArgs struct {
	flags, pidFD, childTID, parentTID, exitSignal, stack, stackSize, tls, setTID, setTIDSize, cgroup uint64
}

// request is everything rawSpawn and its child read, and what the child reports. Its layout is fixed: the offsets
// are written out in spawn_linux_amd64.s (TestRequestLayout checks them).
type request struct {
	flags   uintptr              // 0: clone flags, SIGCHLD included (when clone3 is nil)
	clone3  *cloneArgs           // 8: clone3's arguments, or nil
	path    *byte                // 16
	argv    **byte               // 24
	envp    **byte               // 32
	fds     *int32               // 40: fds[i] becomes descriptor i
	nfds    uintptr              // 48
	caps    *uintptr             // 56: ambient capabilities to raise
	ncaps   uintptr              // 64
	capHdr  *unix.CapUserHeader  // 72
	capData *[2]unix.CapUserData // 80
	mask    uint64               // 88: the thread's signal mask before the clone, restored in the child and after
	all     uint64               // 96: every signal (blocked across the clone)
	dfl     [4]uint64            // 104: a kernel struct sigaction of SIG_DFL
	errno   uintptr              // 136: set by the child when a step fails
	step    uintptr              // 144: which step (stepNames)
	roExec  uintptr              // 152: nonzero: execute path from a read-only detached bind of it (ReadOnlyExec)
	roAttr  [4]uint64            // 160: the kernel's struct mount_attr for it
	empty   uint64               // 192: an empty C string (execveat's and mount_setattr's path with AT_EMPTY_PATH)
}

// stepNames name the child's steps, by the numbers spawn_linux_amd64.s stores.
var stepNames = [...]string{1: "sigprocmask", 2: "dup3", 3: "capset", 4: "prctl(PR_CAP_AMBIENT)", 5: "execve",
	6: "open_tree", 7: "mount_setattr", 8: "execveat"}

// readOnlyExecStep reports whether step is one only ReadOnlyExec takes: its failure means that this kernel or its
// policy does not allow it.
func readOnlyExecStep(step string) bool { return step == "open_tree" || step == "mount_setattr" }

// ReadOnlyExecSupported reports whether Start can take Attr.ReadOnlyExec on this architecture.
const ReadOnlyExecSupported = true

// rawSpawn blocks every signal on this thread, clones with req (CLONE_VM|CLONE_VFORK: it returns once the child has
// executed its program or exited), restores the signal mask, and returns the child's PID or the clone's errno.
//
//go:noescape
func rawSpawn(req *request) (pid uintptr, errno uintptr)

func start(a *Attr) (int, error) {
	argv, err := syscall.SlicePtrFromStrings(a.Args)
	if err != nil {
		return 0, err
	}
	envp, err := syscall.SlicePtrFromStrings(a.Env)
	if err != nil {
		return 0, err
	}
	path, err := syscall.BytePtrFromString(a.Path)
	if err != nil {
		return 0, err
	}
	// A source descriptor below len(Files) that is not already in its place would be overwritten by the child's
	// dup3 onto it before its own turn: it moves above first (a close-on-exec copy, closed here afterwards).
	fds := make([]int32, len(a.Files)+1) // never empty: &fds[0] is passed
	for i, fd := range a.Files {
		if fd != i && fd < len(a.Files) {
			nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, len(a.Files))
			if err != nil {
				return 0, &StepError{Step: "fcntl(F_DUPFD_CLOEXEC)", Err: err.(syscall.Errno)}
			}
			defer unix.Close(nfd)
			fd = nfd
		}
		fds[i] = int32(fd)
	}
	caps := make([]uintptr, len(a.AmbientCaps)+1)
	copy(caps, a.AmbientCaps)
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := &[2]unix.CapUserData{}
	for _, c := range a.AmbientCaps {
		// A capability is raised to the ambient set only from the permitted and inheritable ones; the child holds
		// every capability of its new user namespace, but inherits this process's (empty) inheritable set.
		data[c/32].Effective |= 1 << (c % 32)
		data[c/32].Permitted |= 1 << (c % 32)
		data[c/32].Inheritable |= 1 << (c % 32)
	}
	req := &request{
		flags: a.Cloneflags | unix.CLONE_VM | unix.CLONE_VFORK | uintptr(unix.SIGCHLD),
		path:  path, argv: &argv[0], envp: &envp[0],
		fds: &fds[0], nfds: uintptr(len(a.Files)),
		caps: &caps[0], ncaps: uintptr(len(a.AmbientCaps)), capHdr: hdr, capData: data,
		all: ^uint64(0),
	}
	if a.ReadOnlyExec {
		if a.Cloneflags&unix.CLONE_NEWNS == 0 || a.Cloneflags&unix.CLONE_NEWUSER == 0 {
			return 0, errors.New("spawn: ReadOnlyExec needs new user and mount namespaces")
		}
		req.roExec = 1
		req.roAttr[0] = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	}
	if a.UseCgroupFD {
		req.clone3 = &cloneArgs{flags: uint64(a.Cloneflags | unix.CLONE_VM | unix.CLONE_VFORK | unix.CLONE_INTO_CGROUP),
			exitSignal: uint64(unix.SIGCHLD), cgroup: uint64(a.CgroupFD)}
	}
	// No descriptor is being created without its close-on-exec flag meanwhile (the standard library's rule).
	syscall.ForkLock.Lock()
	pid, errno := rawSpawn(req)
	syscall.ForkLock.Unlock()
	runtime.KeepAlive(argv)
	runtime.KeepAlive(envp)
	runtime.KeepAlive(path)
	runtime.KeepAlive(fds)
	runtime.KeepAlive(caps)
	if errno != 0 {
		return 0, syscall.Errno(errno)
	}
	if req.errno != 0 {
		_, _ = Reap(int(pid))
		step := "child"
		if req.step < uintptr(len(stepNames)) {
			step = stepNames[req.step]
		}
		return 0, &StepError{Step: step, Err: syscall.Errno(req.errno)}
	}
	return int(pid), nil
}
