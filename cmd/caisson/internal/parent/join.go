package parent

import (
	"os"
	"strings"
	"syscall"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/state"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/term"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
	"github.com/caisson-sandbox/caisson/rootfs"
	"golang.org/x/sys/unix"
)

// runJoined runs a sandbox that shares the user namespace and some of the namespaces (net, ipc, uts) of a running
// one, pod-style, with its own mount and PID namespaces. A multithreaded Go process cannot enter another user
// namespace, so the running sandbox's init starts the new init on request (over the control socket), and hands it
// the socket whose other end this process keeps: from then on this process supervises it like any sandbox. Its
// file system is built from the running sandbox's view, so paths given to --bind are resolved there, and the
// current directory is not bound unless it is named with --workdir.
func runJoined(r *config.Run, sigs chan os.Signal, notified <-chan struct{}) int {
	pod, err := state.Lookup(r.Life.Join)
	if err != nil {
		return errorf("--join: %v", err)
	}
	sb := &r.Sandbox
	// Drop the current-directory bind that exists in the caller's view, not necessarily in the pod's.
	if sb.Workdir == r.Cwd {
		ops := sb.Rootfs.Ops[:0]
		for _, op := range sb.Rootfs.Ops {
			if !(op.Kind == rootfs.KindBind && op.Src == r.Cwd && op.Dst == r.Cwd) {
				ops = append(ops, op)
			}
		}
		sb.Rootfs.Ops = ops
		sb.Workdir = "/"
	}
	orderMounts(sb)
	entry, err := createEntry(r)
	if err != nil {
		return errorf("%v", err)
	}
	defer entry.Remove()
	if r.Life.Detach {
		if err := redirectToLog(entry); err != nil {
			return errorf("%v", err)
		}
	}
	stdio, err := OpenStdio(sb.Security.Posture)
	if err != nil {
		return errorf("%v", err)
	}
	defer stdio.Finish()
	conn, err := dial(pod.Name)
	if err != nil {
		return errorf("--join: %v", err)
	}
	defer conn.Close()
	mine, theirs, err := wire.Pair()
	if err != nil {
		return errorf("%v", err)
	}
	defer mine.Close()
	err = wire.Send(conn, wire.Message{Type: "join", Join: r.Life.JoinNS}, append(stdio.FDs(), int(theirs.Fd()))...)
	theirs.Close()
	stdio.Started()
	if err != nil {
		return errorf("--join: %v", err)
	}
	reply, _, err := wire.Recv(conn)
	switch {
	case err != nil:
		return errorf("--join: sandbox %s ended", pod.Name)
	case reply.Type == "failed":
		return errorf("--join: %s", reply.Error)
	case reply.Type != "started" || reply.PID <= 0:
		return errorf("--join: unexpected answer %q from %s", reply.Type, pod.Name)
	}
	initPID := reply.PID
	var tty *term.Terminal
	if sb.TTY {
		tty = term.New()
	}
	sess := newSession(mine, initPID, entry, tty)
	done, err := sess.begin(sb, r.Life.Detach, notified)
	if err != nil {
		_ = unix.Kill(initPID, unix.SIGKILL)
		return errorf("%v", err)
	}
	defer done()
	// Not our child: the end of the new init is the end of its socket, and its status the last thing it said.
	waited := make(chan int, 1)
	go func() {
		<-sess.inited
		sess.mu.Lock()
		code := sess.exitStatus
		sess.mu.Unlock()
		if code < 0 {
			code = 128 + int(syscall.SIGKILL)
		}
		waited <- code
	}()
	return FinishStdio(stdio, sess.wait(sigs, waited, nil, func() { _ = unix.Kill(initPID, unix.SIGKILL) }))
}

// dial connects to the control socket of the running sandbox name.
func dial(name string) (*os.File, error) {
	path, err := state.SocketPath(name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, errNoSandbox(name, err)
	}
	return os.NewFile(uintptr(fd), "control"), nil
}

func errNoSandbox(name string, err error) error {
	return &noSandboxError{name: name, err: err}
}

type noSandboxError struct {
	name string
	err  error
}

// Error implements error.
func (e *noSandboxError) Error() string {
	return "no running sandbox named " + strings.TrimSpace(e.name) + " (see 'caisson ps')"
}

// Unwrap returns the connection error.
func (e *noSandboxError) Unwrap() error { return e.err }

// Dial connects to the control socket of the running sandbox name (for exec and stop).
func Dial(name string) (*os.File, error) {
	if _, err := state.Lookup(name); err != nil {
		return nil, err
	}
	return dial(name)
}
