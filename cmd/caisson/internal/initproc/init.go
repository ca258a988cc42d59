// Package initproc is the sandbox's PID 1.
//
// The parent starts it with clone flags for every new namespace and with all capabilities ambient, so it keeps
// them across its own exec even before its uid is mapped. It waits for the Config (which the parent sends only
// after writing the ID maps), builds the sandbox (host name, loopback, file system, time namespace), starts the
// command, then stays as a minimal init: it reaps every process re-parented to it, forwards every catchable signal
// to the command, and exits with the command's status as soon as the command ends. Its exit tears the whole PID
// namespace down, so no background process of the command outlives it; it dies itself with SIGKILL when the
// parent dies (PR_SET_PDEATHSIG, re-armed here and checked against the socket).
package initproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/harden"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/slirp"
	"golang.org/x/sys/unix"
)

// StageName is init's argv[0]; main dispatches on it before parsing any flag.
const StageName = "caisson-init"

// PrepareTapArg, as init's argv[1], asks init to create the sandbox's tap device first thing (see
// slirp.PrepareTap).
const PrepareTapArg = "--prepare-tap"

// Exit codes shared with the parent.
const (
	ExitSetup      = 125 // caisson's own error
	ExitCannotExec = 126
	ExitNotFound   = 127
)

// fail prints one caisson: line and returns code.
func fail(code int, format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", args...)
	return code
}

// Main runs init. Preconditions: the calling goroutine is locked to the process's main thread (main's init()
// does it), which is also the thread the command is forked from.
func Main() int {
	// Die with the parent: re-armed here because Go's own Pdeathsig check cannot work across a PID namespace
	// (getppid() is 0 here), and checked below against the socket.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fail(ExitSetup, "init: set parent-death signal: %v", err)
	}
	// Started as /proc/self/exe, init would show as "exe" in ps.
	name := []byte(StageName + "\x00")
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
	runtime.KeepAlive(name)
	// Catch SIGCHLD before the command exists so that no exit is missed (registering it is a round trip inside the
	// Go runtime: done while waiting for the parent). Every other catchable signal is caught and dropped (see
	// dropSignals): the parent signals the command itself (through a pidfd).
	sigs := make(chan os.Signal, 128)
	notified := make(chan struct{})
	go func() {
		signal.Notify(sigs, unix.SIGCHLD)
		dropSignals()
		close(notified)
	}()
	unix.CloseOnExec(wire.InitFD)
	sock := wire.Pollable(wire.InitFD, "caisson-init")
	if len(os.Args) > 1 && os.Args[1] == PrepareTapArg {
		// The parent starts the network helper once told, and the helper attaches to this device (see
		// slirp.PrepareTap). On a failure the helper creates the device itself, or reports why it cannot; the
		// message goes either way, so that the parent never waits for it in vain.
		_ = slirp.PrepareTap()
		_ = wire.Send(sock, wire.Message{Type: "tap"})
	}
	msg, _, err := wire.Recv(sock)
	if err != nil {
		// The parent died or failed before sending the configuration; it reports its own error.
		return ExitSetup
	}
	if parentGone(sock) {
		return ExitSetup
	}
	if msg.Type != "config" || msg.Config == nil {
		return fail(ExitSetup, "init: expected a config message, got %q", msg.Type)
	}
	cfg := msg.Config
	if cfg.BecomeRoot {
		// Go applies these to every thread of the process.
		if err := syscall.Setresgid(0, 0, 0); err != nil {
			return fail(ExitSetup, "init: setresgid 0: %v", err)
		}
		if err := syscall.Setresuid(0, 0, 0); err != nil {
			return fail(ExitSetup, "init: setresuid 0: %v", err)
		}
	}
	if _, err := unix.Setsid(); err != nil {
		return fail(ExitSetup, "init: setsid: %v", err)
	}
	if cfg.Shares("pid") {
		// Not PID 1: become the reaper of the command's orphans so they can be found and killed at the end.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fail(ExitSetup, "init: set child subreaper: %v", err)
		}
	}
	if err := setup(cfg); err != nil {
		return fail(ExitSetup, "%v", err)
	}
	if cfg.Extra.PortChild {
		// Published ports: the parent asks, this side dials inside the sandbox's network namespace.
		go slirp.ServeChild(os.NewFile(wire.PortFD, "caisson-ports"))
	}
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	attr := &syscall.SysProcAttr{Setsid: true}
	if cfg.TTY {
		master, slave, err := openPTY(cfg.WinSize)
		if err != nil {
			return fail(ExitSetup, "%v", err)
		}
		err = wire.Send(sock, wire.Message{Type: "pty"}, int(master.Fd()))
		master.Close()
		if err != nil {
			return fail(ExitSetup, "init: send terminal: %v", err)
		}
		if err := bindConsole(slave); err != nil {
			return fail(ExitSetup, "%v", err)
		}
		files = []*os.File{slave, slave, slave} // closed below, once the command has it
		attr.Setctty = true
		attr.Ctty = 0
	}
	if cfg.UID != 0 || cfg.GID != 0 {
		// keep-id: run as the caller's own ids; host supplementary groups are kept (dropping them could bypass
		// a group-deny permission, CVE-2014-8989), so no setgroups.
		attr.Credential = &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, NoSetGroups: true}
	}
	var early []request
	if cfg.Extra.AwaitNet {
		// The network helper starts while this side sets up; the command starts once it is ready. Requests
		// that arrive meanwhile (caisson exec) are kept for the supervisor.
		for {
			m, fds, err := wire.Recv(sock)
			if err != nil {
				return ExitSetup // the parent failed or died; it reports its own error
			}
			if m.Type == "net" {
				break
			}
			early = append(early, request{m, fds})
		}
	}
	if !cfg.Shares("net") && cfg.Extra.Guest.DNS != "" {
		// Keep traffic to the driver's virtual addresses inside the sandbox unless it is meant to leave. Only
		// now: the helper's default route through the gateway must exist before the gateway can be refused.
		if err := slirp.GuardGuest(cfg.Extra.Guest); err != nil {
			return fail(ExitSetup, "init: %v", err)
		}
	}
	<-notified
	if err := harden.Apply(cfg, attr, fdsOf(files)); err != nil {
		return fail(ExitSetup, "%v", err)
	}
	if cfg.AsPID1 {
		// --as-pid-1: the command takes init's place. The parent signals this process from now on.
		for _, r := range early {
			for _, fd := range r.fds {
				unix.Close(fd) // close-on-exec anyway; the parent refuses such requests itself
			}
		}
		_ = wire.Send(sock, wire.Message{Type: "ready", PID: 1})
		code, err := execInPlace(cfg, fdsOf(files), attr)
		return fail(code, "%v", err) // only when the exec failed
	}
	pid, code, err := start(cfg, fdsOf(files), attr)
	if err != nil {
		return fail(code, "%v", err)
	}
	for _, f := range files {
		if f != os.Stdin && f != os.Stdout && f != os.Stderr {
			f.Close()
		}
	}
	_ = wire.Send(sock, wire.Message{Type: "ready", PID: pid})
	// Commands run by `caisson exec` get the command's credentials, capabilities and parent-death signal.
	base := *attr
	base.Setctty, base.Ctty = false, 0
	sv := &supervisor{cfg: cfg, sock: sock, main: pid, sigs: sigs, base: base,
		execs: map[int]string{}, joins: map[int]bool{}, early: early}
	status := sv.run()
	if cfg.Shares("pid") {
		killOrphans()
	}
	_ = wire.Send(sock, wire.Message{Type: "exit", Status: status})
	return status
}

// fdsOf returns the descriptors of files.
func fdsOf(files []*os.File) []uintptr {
	fds := make([]uintptr, len(files))
	for i, f := range files {
		fds[i] = f.Fd()
	}
	return fds
}

// parentGone reports whether the parent has closed its end of the socket.
func parentGone(sock *os.File) bool {
	rc, err := sock.SyscallConn() // not Fd(): that would make the socket blocking again
	if err != nil {
		return false
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		gone = err == nil && n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLRDHUP) != 0
	})
	return gone
}

// setup builds the sandbox in init's namespaces.
func setup(cfg *config.Sandbox) error {
	if cfg.Extra.NewCgroupNS {
		// On this (locked) thread, which forks the command: its cgroup namespace is rooted at the sandbox's
		// groups, so a cgroup file system mounted inside cannot reach the limits set on their parents.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("init: new cgroup namespace: %w", err)
		}
	}
	if cfg.Hostname != "" {
		if err := setHostname(cfg); err != nil {
			return err
		}
	}
	if !cfg.Shares("net") {
		if err := slirp.BringUpLoopback(); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	fallbacks, err := rootfs.Setup(cfg.Rootfs)
	if err != nil {
		return explainSetup(cfg.Extra.Outer, err)
	}
	reportFallbacks(cfg, fallbacks)
	if !cfg.Shares("time") {
		if err := newTimeNamespace(cfg); err != nil {
			return err
		}
	}
	return nil
}

// newTimeNamespace creates the time namespace the command will be born into. unshare(CLONE_NEWTIME) does not move
// the caller, only the children of the calling thread, and the offsets must be written before the first child:
// hence this runs on the locked main thread that later forks the command.
func newTimeNamespace(cfg *config.Sandbox) error {
	off := cfg.TimeOffsets
	if err := unix.Unshare(unix.CLONE_NEWTIME); err != nil {
		switch {
		case errors.Is(err, unix.EINVAL):
			if off == (config.TimeOffsets{}) {
				return nil // kernel without time namespaces and no offsets asked for
			}
			return errors.New("--time-offset: this kernel has no time namespaces (they need Linux 5.6+ built with CONFIG_TIME_NS)")
		case outer.Refused(err), errors.Is(err, unix.ENOSPC):
			// An outer filter, or the outer sandbox's limit on time namespaces (user.max_time_namespaces).
			return timeNamespaceRefused(cfg, err)
		}
		return fmt.Errorf("init: new time namespace: %w", err)
	}
	if off == (config.TimeOffsets{}) {
		return nil
	}
	// /proc is the sandbox's own fresh procfs here (mounted by rootfs.Setup), nothing else runs yet.
	text := fmt.Sprintf("monotonic %d 0\nboottime %d 0\n", off.Monotonic, off.Boottime)
	// timens_offsets exists per process only; it shows the thread group leader's namespace-for-children, which is
	// this thread (main's init() locks the main goroutine to the main thread).
	if unix.Gettid() != unix.Getpid() {
		return errors.New("init: time namespace: not on the main thread")
	}
	f, err := os.OpenFile("/proc/self/timens_offsets", os.O_WRONLY, 0)
	if err != nil {
		return outerProcRefused(cfg, "--time-offset", fmt.Errorf("init: time offsets: %w", err))
	}
	defer f.Close()
	if err := checkProcfs(f); err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		return fmt.Errorf("init: write time offsets %q: %w", strings.TrimSpace(text), err)
	}
	return nil
}

// checkProcfs verifies that f is on a procfs (CVE-2025-52881 class: writes meant for /proc must land there).
func checkProcfs(f *os.File) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("init: statfs %s: %w", f.Name(), err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("init: %s is not on procfs", f.Name())
	}
	return nil
}

// execInPlace replaces init with the command (--as-pid-1): the descriptors in fds become 0, 1 and 2, the terminal
// (with -t) becomes the controlling one, and the command inherits everything init set on this thread (seccomp,
// Landlock, capabilities, no_new_privs, rlimits, the parent-death signal, the time namespace for children, which
// execve enters). It returns only on failure, with the exit code to use.
func execInPlace(cfg *config.Sandbox, fds []uintptr, attr *syscall.SysProcAttr) (int, error) {
	path, code, err := resolveCommand(cfg)
	if err != nil {
		return code, err
	}
	for i, fd := range fds {
		if int(fd) != i {
			if err := unix.Dup3(int(fd), i, 0); err != nil {
				return ExitSetup, fmt.Errorf("init: descriptor %d: %w", i, err)
			}
		}
	}
	if attr.Setctty {
		if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
			return ExitSetup, fmt.Errorf("init: controlling terminal: %w", err)
		}
	}
	if err := unix.Chdir(cfg.Workdir); err != nil {
		return ExitSetup, fmt.Errorf("working directory %s: %w", cfg.Workdir, err)
	}
	err = syscall.Exec(path, cfg.Args, cfg.Env)
	switch {
	case errors.Is(err, unix.ENOENT):
		return ExitNotFound, fmt.Errorf("%s: %w", cfg.Args[0], err)
	case errors.Is(err, unix.E2BIG), errors.Is(err, unix.ENOMEM):
		return ExitSetup, fmt.Errorf("%s: %w", cfg.Args[0], err)
	}
	return ExitCannotExec, fmt.Errorf("%s: cannot execute: %w", cfg.Args[0], err)
}

// resolveCommand checks the working directory and finds the command's path: the exit code on failure is 127 when
// it is not found and 125 for a bad working directory.
func resolveCommand(cfg *config.Sandbox) (string, int, error) {
	if st, err := os.Stat(cfg.Workdir); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return "", ExitSetup, fmt.Errorf("working directory %s: %w", cfg.Workdir, unwrapPath(err))
	}
	name := cfg.Args[0]
	path := name
	if !strings.Contains(name, "/") {
		p, err := lookPath(name, cfg.Env)
		if err != nil {
			return "", ExitNotFound, fmt.Errorf("%s: command not found", name)
		}
		path = p
	} else if !filepath.IsAbs(path) {
		path = filepath.Join(cfg.Workdir, path)
	}
	return path, 0, nil
}

// start execs the command and returns its PID. On failure the code tells the caller how to exit: 127 when the
// command is not found, 126 when it cannot be executed, 125 for caisson's own errors.
func start(cfg *config.Sandbox, fds []uintptr, attr *syscall.SysProcAttr) (int, int, error) {
	path, code, err := resolveCommand(cfg)
	if err != nil {
		return 0, code, err
	}
	name := cfg.Args[0]
	if cfg.Shares("pid") {
		// No PID namespace to tear down: the command at least dies with init (its background processes are
		// killed by killOrphans when the command ends, but not if init itself is killed).
		attr.Pdeathsig = unix.SIGKILL
	}
	// syscall.ForkExec rather than os.StartProcess: no pidfd (supervise reaps with wait4(-1)) and so no extra
	// probing fork on first use, and the fork happens on this locked thread.
	pid, err := syscall.ForkExec(path, cfg.Args, &syscall.ProcAttr{Dir: cfg.Workdir, Env: cfg.Env, Files: fds, Sys: attr})
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return 0, ExitNotFound, fmt.Errorf("%s: %w", name, err)
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ENOMEM), errors.Is(err, unix.ENOSYS):
			// The fork itself failed (process limits, memory): caisson's error, not the command's.
			return 0, ExitSetup, fmt.Errorf("%s: cannot start a process: %w", name, err)
		case errors.Is(err, unix.EMFILE) && harden.HasLimit(cfg.Security.Rlimits, unix.RLIMIT_NOFILE):
			// Init holds a few descriptors of its own when it forks (its error pipe, the terminal, pidfds).
			return 0, ExitSetup, fmt.Errorf("%s: cannot start a process: %w (hint: --rlimit nofile binds init too; allow at least 8)", name, err)
		}
		return 0, ExitCannotExec, fmt.Errorf("%s: cannot execute: %w", name, err)
	}
	return pid, 0, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// lookPath finds an executable regular file named name in the command's PATH.
func lookPath(name string, env []string) (string, error) {
	pathEnv := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// killOrphans kills and reaps every remaining descendant when the PID namespace is shared with the host (and so
// is not torn down by init's exit). Bounded: each round kills what it finds, at most 1000 rounds.
func killOrphans() {
	for round := 0; round < 1000; round++ {
		kids := children()
		if len(kids) == 0 {
			return
		}
		for _, k := range kids {
			_ = unix.Kill(k, unix.SIGKILL)
		}
		for {
			var ws unix.WaitStatus
			got, err := unix.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || got <= 0 {
				break
			}
			if len(children()) == 0 {
				break
			}
		}
	}
}

// children lists the PIDs of init's children from /proc/self/task/*/children.
func children() []int {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			var n int
			if _, err := fmt.Sscan(f, &n); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// droppedSignals are the catchable signals init drops. The Go runtime handles every signal, so the kernel's
// protection of PID 1 (a signal without a handler is not delivered from inside its namespace) does not apply to
// init, and the runtime's own reaction to most of these is to exit (TERM, HUP, INT) or to dump its goroutines and
// exit (QUIT, and SEGV, BUS, ABRT... sent with kill): the command's `kill -TERM 1` would end the sandbox with
// init's status, not the command's. SIGCHLD is init's own; SIGURG and SIGPROF belong to the runtime; SIGKILL and
// SIGSTOP cannot be caught.
var droppedSignals = []os.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGILL, unix.SIGTRAP, unix.SIGABRT,
	unix.SIGBUS, unix.SIGFPE, unix.SIGUSR1, unix.SIGSEGV, unix.SIGUSR2, unix.SIGPIPE, unix.SIGALRM, unix.SIGTERM,
	unix.SIGSTKFLT, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGXCPU, unix.SIGXFSZ,
	unix.SIGVTALRM, unix.SIGWINCH, unix.SIGIO, unix.SIGPWR, unix.SIGSYS}

// dropSignals catches droppedSignals into a channel nobody reads (a full channel drops them), which also gives the
// command default dispositions, as a container's process has: a signal ignored when init started (a shell's
// background job ignores SIGINT and SIGQUIT, nohup SIGHUP) would otherwise stay ignored across execve, while a
// caught one is reset to the default. Faults of init itself (a real SIGSEGV) are not affected: the runtime turns
// those into panics whatever is caught.
func dropSignals() {
	signal.Notify(make(chan os.Signal, 1), droppedSignals...)
}
