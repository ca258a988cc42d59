package initproc

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/trim"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
	"github.com/caisson-sandbox/caisson/rootfs"
	"golang.org/x/sys/unix"
)

// supervisor is init after the command started: it reaps every child and runs
// the parent's requests (exec, join) from the locked main thread, so every process it starts inherits the same
// namespaces, root, capabilities, no_new_privs and seccomp filter as the command.
type supervisor struct {
	cfg   *config.Sandbox
	sock  *os.File
	main  int // the command's PID
	sigs  chan os.Signal
	base  syscall.SysProcAttr // what the command was started with (without its terminal)
	execs map[int]string      // PID → exec request ID
	joins map[int]bool        // PIDs of inits of sandboxes that joined this one
	// rootDied is set once the death of the root's daemon was reported.
	rootDied bool
	// early are the requests that arrived before the command started, handled first.
	early []request
}

// request is one message from the parent with its descriptors.
type request struct {
	msg wire.Message
	fds []int
}

// run returns the command's exit status (128+N when it was killed by signal N). If the parent goes away (the
// socket closes), the sandbox ends with 137: nobody is left to report to.
func (sv *supervisor) run() int {
	reqs := make(chan request, 16)
	go func() {
		defer close(reqs)
		for {
			m, fds, err := wire.Recv(sv.sock)
			if err != nil {
				return
			}
			reqs <- request{m, fds}
		}
	}()
	for _, r := range sv.early {
		sv.handle(r)
	}
	sv.early = nil
	idle := time.After(trim.Delay) // the start-up's memory goes back once the sandbox has run a while
	for {
		if code, done := sv.reap(); done {
			return code
		}
		select {
		case <-idle:
			trim.Idle()
		case <-sv.sigs: // SIGCHLD: reaped at the top of the loop
		case r, ok := <-reqs:
			if !ok {
				return 128 + int(unix.SIGKILL)
			}
			sv.handle(r)
		}
	}
}

// reap collects every exited child without blocking; done is true once the command itself was collected.
func (sv *supervisor) reap() (code int, done bool) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || got <= 0 {
			return code, done
		}
		status := exitStatus(ws)
		switch {
		case got == sv.main:
			if !done { // a dead root helper (below) decides the status
				code, done = status, true
				if name, gone := rootfs.RootHelperGone(); gone {
					// The daemon is dying but not yet collected; the command may have ended because of it.
					sv.rootGone(name, "its connection is aborted")
					code = ExitSetup
				}
			}
		case sv.execs[got] != "":
			_ = wire.Send(sv.sock, wire.Message{Type: "exited", ID: sv.execs[got], Status: status})
			delete(sv.execs, got)
		case rootfs.Helper(got) != "":
			// The daemon serving the root (fuse-overlayfs) is gone, and the root with it: end the sandbox, loudly
			// (init's return kills the rest, as at the command's end).
			sv.rootGone(rootfs.Helper(got), fmt.Sprintf("status %d", status))
			code, done = ExitSetup, true
		default:
			delete(sv.joins, got)
		}
	}
}

// rootGone reports, once, that the daemon serving the sandbox's root ended.
func (sv *supervisor) rootGone(name, how string) {
	if sv.rootDied {
		return
	}
	sv.rootDied = true
	fmt.Fprintf(os.Stderr, "caisson: %s, which serves the sandbox's root, ended (%s): ending the sandbox\n", name, how)
}

func exitStatus(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 0
}

// handle runs one parent request.
func (sv *supervisor) handle(r request) {
	defer func() {
		for _, fd := range r.fds {
			unix.Close(fd)
		}
	}()
	m := r.msg
	switch m.Type {
	case "exec":
		sv.exec(m, r.fds)
	case "join":
		sv.join(m, r.fds)
	case "signal":
		for pid, id := range sv.execs {
			if id == m.ID && m.Signal > 0 && m.Signal < 65 {
				_ = unix.Kill(pid, unix.Signal(m.Signal))
			}
		}
	}
}

func (sv *supervisor) failed(id string, code int, err error) {
	_ = wire.Send(sv.sock, wire.Message{Type: "failed", ID: id, Code: code, Error: err.Error()})
}

// exec starts a command inside the sandbox for `caisson exec`, with the caller's stdio (or a new terminal).
func (sv *supervisor) exec(m wire.Message, fds []int) {
	req := m.Exec
	if req == nil || len(req.Args) == 0 || req.Args[0] == "" {
		sv.failed(m.ID, ExitSetup, errors.New("exec: no command"))
		return
	}
	cfg := *sv.cfg
	cfg.Args = req.Args
	for _, kv := range req.Env {
		cfg.Env = setEnv(cfg.Env, kv)
	}
	if req.Workdir != "" {
		cfg.Workdir = req.Workdir
	}
	base := sv.base
	attr := &base
	var stdio []uintptr
	if req.TTY {
		master, slave, err := openPTY(req.WinSize)
		if err != nil {
			sv.failed(m.ID, ExitSetup, err)
			return
		}
		err = wire.Send(sv.sock, wire.Message{Type: "pty", ID: m.ID}, int(master.Fd()))
		master.Close()
		if err != nil {
			slave.Close()
			return
		}
		defer slave.Close()
		stdio = fdsOf([]*os.File{slave, slave, slave})
		attr.Setctty = true
	} else {
		if len(fds) != 3 {
			sv.failed(m.ID, ExitSetup, fmt.Errorf("exec: want 3 descriptors, got %d", len(fds)))
			return
		}
		for _, fd := range fds {
			stdio = append(stdio, uintptr(fd))
		}
	}
	pid, code, err := start(&cfg, stdio, attr)
	if err != nil {
		sv.failed(m.ID, code, err)
		return
	}
	sv.execs[pid] = m.ID
	_ = wire.Send(sv.sock, wire.Message{Type: "started", ID: m.ID, PID: pid})
}

// join starts the init of a new sandbox that shares this one's user namespace and the namespaces listed in the
// request (net, ipc, uts), with its own mount and PID namespaces. The new init talks to its own caisson over the
// socket passed as the fourth descriptor, exactly like a first-level init; its file system is built from this
// sandbox's view.
func (sv *supervisor) join(m wire.Message, fds []int) {
	if len(fds) != 4 {
		sv.failed(m.ID, ExitSetup, fmt.Errorf("join: want 4 descriptors, got %d", len(fds)))
		return
	}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWCGROUP)
	for ns, flag := range map[string]uintptr{"net": unix.CLONE_NEWNET, "ipc": unix.CLONE_NEWIPC, "uts": unix.CLONE_NEWUTS} {
		if !contains(m.Join, ns) {
			flags |= flag
		}
	}
	// Close-on-exec is cleared by ForkExec for the descriptors it places at 0-3.
	pid, err := syscall.ForkExec("/proc/self/exe", []string{StageName}, &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2]), uintptr(fds[3])},
		Sys:   &syscall.SysProcAttr{Cloneflags: flags, AmbientCaps: ambientCaps()},
	})
	if err != nil {
		sv.failed(m.ID, ExitSetup, fmt.Errorf("join: start a sandbox in %s's namespaces: %w", strings.Join(m.Join, ","), err))
		return
	}
	sv.joins[pid] = true
	_ = wire.Send(sv.sock, wire.Message{Type: "started", ID: m.ID, PID: pid})
}

// ambientCaps lists the capabilities this thread holds in its permitted and inheritable sets, to be made ambient
// in a joined sandbox's init: the kernel raises an ambient capability only when it is in both, and the hardening
// of the command shrank the inheritable set to the command's capabilities (CAP_SYS_PTRACE is not among them in
// the default posture), which bounds what a joined sandbox may hold.
func ambientCaps() []uintptr {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil
	}
	var caps []uintptr
	for c := uint(0); c < 64; c++ {
		bit := uint32(1) << (c % 32)
		if data[c/32].Permitted&bit != 0 && data[c/32].Inheritable&bit != 0 {
			caps = append(caps, uintptr(c))
		}
	}
	return caps
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// setEnv replaces or adds one K=V.
func setEnv(env []string, kv string) []string {
	key, _, _ := strings.Cut(kv, "=")
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k != key {
			out = append(out, e)
		}
	}
	return append(out, kv)
}
