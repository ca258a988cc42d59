// Package wire is the parent↔init protocol: messages encoded by a small reflection codec of its own (codec.go), one
// per datagram, on a SOCK_SEQPACKET socket pair (the init end is fd 3 in init), with file descriptors passed as
// SCM_RIGHTS. The codec carries strings byte for byte: a command line, environment or path that is not UTF-8
// arrives as it was sent (JSON would replace such bytes). A message larger than one datagram may be (the socket's send buffer, ~200 KB unprivileged: a long
// command line) travels in a sealed memfd attached to a one-byte datagram.
//
// The order is fixed: the parent starts init, writes its ID maps and starts the network, then sends one Config
// message; init builds the sandbox and answers either Ready (with the command's PID inside) or nothing at all (it
// prints its own error and exits 125, 126 or 127). With --tty, a PTY message carrying the terminal's master fd
// comes before Ready.
package wire

import (
	"errors"
	"fmt"
	"os"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"golang.org/x/sys/unix"
)

// InitFD is the fd number of init's end of the socket pair; PortFD carries the port forwarder's socket.
const (
	InitFD = 3
	PortFD = 4
)

// inlineMax is the largest message sent inside its datagram; larger ones go in a memfd (see Send).
const inlineMax = 64 << 10

// maxMessage bounds one message, a memfd's included: far above what the kernel accepts as a command line and
// environment (ARG_MAX is a quarter of the stack limit, 2 MiB by default).
const maxMessage = 64 << 20

// The first byte of a datagram says where the message is.
const (
	tagInline = 'i' // the rest of the datagram
	tagMemfd  = 'f' // in the last descriptor attached, a sealed memfd
)

// Message is one datagram. The same messages travel between a client command (exec, stop, run --join) and the
// supervising caisson on the sandbox's control socket; the supervisor relays requests to init and init's answers
// back, matched by ID.
type Message struct {
	// Type is one of:
	//   parent → init:   "config", "exec" (fds 0-2 attached unless Exec.TTY), "signal", "join" (fds 0-2 and the
	//                    new init's socket attached)
	//   init → parent:   "tap" (first, only when asked: its tap device exists), "pty" (master fd attached),
	//                    "ready", "started", "failed", "exited", "exit"
	//   client → parent: "exec", "join", "signal", "stop"
	Type   string          `json:"type"`
	Config *config.Sandbox `json:"config,omitempty"` // with "config"
	// ID names an exec or join request; empty for the sandbox's own command.
	ID string `json:"id,omitempty"`
	// PID is the command's PID inside ("ready", "started"), or the new init's host PID for a join.
	PID    int          `json:"pid,omitempty"`
	Exec   *ExecRequest `json:"exec,omitempty"`
	Join   []string     `json:"join,omitempty"`   // with "join": the namespaces shared (net, ipc, uts)
	Signal int          `json:"signal,omitempty"` // with "signal"
	// Status is an exit status ("exited", "exit"); Code and Error describe a failure ("failed").
	Status int    `json:"status"`
	Code   int    `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`
	// Grace is the SIGTERM-to-SIGKILL delay of "stop", in milliseconds.
	Grace int64 `json:"grace,omitempty"`
}

// ExecRequest is a command to run inside a running sandbox.
type ExecRequest struct {
	Args    []string       `json:"args"`
	Env     []string       `json:"env,omitempty"` // added to the sandbox's environment
	Workdir string         `json:"workdir,omitempty"`
	TTY     bool           `json:"tty,omitempty"`
	WinSize config.WinSize `json:"winsize"`
}

// Pair returns a connected SOCK_SEQPACKET socket pair, both ends close-on-exec; exec.Cmd.ExtraFiles clears the flag
// on the copy it passes down. The parent's end is non-blocking, so that waiting on it parks a goroutine in the Go
// runtime's poller instead of holding an OS thread; init makes its end non-blocking itself (Pollable).
func Pair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return Pollable(fds[0], "caisson-parent"), os.NewFile(uintptr(fds[1]), "caisson-init"), nil
}

// Pollable makes fd non-blocking and wraps it in an *os.File that the Go runtime's poller serves.
func Pollable(fd int, name string) *os.File {
	_ = unix.SetNonblock(fd, true)
	return os.NewFile(uintptr(fd), name)
}

// Send writes m as one datagram, with fds attached when given.
func Send(f *os.File, m Message, fds ...int) error {
	return SendValue(f, m.Type, m, fds...)
}

// SendValue writes v, encoded (codec.go), as one message (in a sealed memfd when it is larger than a datagram may be),
// with fds attached when given; what names it in errors. Recv's framing: RecvValue reads it.
func SendValue(f *os.File, what string, v any, fds ...int) error {
	b, err := encode([]byte{tagInline}, v)
	if err != nil {
		return fmt.Errorf("encode message %s: %w", what, err)
	}
	if len(b)-1 > maxMessage {
		return fmt.Errorf("message %s is too large (%d bytes, at most %d)", what, len(b)-1, maxMessage)
	}
	if len(b) > inlineMax {
		mfd, err := payloadFD(b[1:])
		if err != nil {
			return fmt.Errorf("message %s: %w", what, err)
		}
		defer unix.Close(mfd)
		b = []byte{tagMemfd}
		fds = append(append([]int(nil), fds...), mfd)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), b, oob, nil, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		return err
	}
	return serr
}

// payloadFD returns a memfd holding b, sealed against any change.
func payloadFD(b []byte) (int, error) {
	fd, err := unix.MemfdCreate("caisson-message", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd: %w", err)
	}
	for off := 0; off < len(b); {
		n, err := unix.Pwrite(fd, b[off:], int64(off))
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("memfd: %w", err)
		}
		off += n
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("memfd seals: %w", err)
	}
	return fd, nil
}

// readPayload reads a message from the memfd fd. It accepts only a regular file of at most maxMessage bytes, so
// that a peer cannot make the reader block (a FIFO) or allocate without bound.
func readPayload(fd int) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > maxMessage {
		return nil, fmt.Errorf("the message's descriptor is not a file of at most %d bytes", maxMessage)
	}
	b := make([]byte, st.Size)
	for off := 0; off < len(b); {
		n, err := unix.Pread(fd, b[off:], int64(off))
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, errors.New("the message's descriptor ended early")
		}
		off += n
	}
	return b, nil
}

// ErrClosed means the other end closed the socket (the peer exited).
var ErrClosed = errors.New("peer closed the socket")

// Recv reads one datagram; fds received with it are returned (the caller owns them).
func Recv(f *os.File) (Message, []int, error) {
	var m Message
	fds, err := RecvValue(f, &m)
	return m, fds, err
}

// RecvValue reads one message written by SendValue into v (a pointer); fds received with it are returned (the
// caller owns them). On error no descriptor is left open.
func RecvValue(f *os.File, v any) ([]int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		buf     []byte
		oob     = make([]byte, unix.CmsgSpace(8*4))
		n, oobn int
		rerr    error
	)
	if err := rc.Read(func(fd uintptr) bool {
		// Size the buffer to the datagram (MSG_PEEK|MSG_TRUNC returns its full length) rather than zeroing the
		// largest possible one for every message.
		var size int
		for {
			size, _, rerr = unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_TRUNC)
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			return false // nothing yet: wait in the poller
		}
		if rerr != nil {
			return true
		}
		buf = make([]byte, min(size, inlineMax)+1)
		for {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
			if rerr != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	if n == 0 {
		return nil, ErrClosed
	}
	var fds []int
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, err
		}
		for _, c := range cmsgs {
			got, err := unix.ParseUnixRights(&c)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	var body []byte
	switch {
	case n > inlineMax:
		closeAll()
		return nil, fmt.Errorf("bad message: a datagram of more than %d bytes", inlineMax)
	case buf[0] == tagInline:
		body = buf[1:n]
	case buf[0] == tagMemfd && n == 1 && len(fds) > 0:
		last := fds[len(fds)-1]
		fds = fds[:len(fds)-1]
		body, err = readPayload(last)
		unix.Close(last)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("bad message: %w", err)
		}
	default:
		closeAll()
		return nil, fmt.Errorf("bad message: unknown framing %q", buf[0])
	}
	if err := decode(body, v); err != nil {
		closeAll()
		return nil, fmt.Errorf("bad message: %w", err)
	}
	return fds, nil
}
