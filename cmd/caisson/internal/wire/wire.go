// Package wire is the parent↔init protocol: JSON messages, one per datagram, on a SOCK_SEQPACKET socket pair
// (the init end is fd 3 in init), with file descriptors passed as SCM_RIGHTS.
//
// The order is fixed: the parent starts init, writes its ID maps and starts the network, then sends one Config
// message; init builds the sandbox and answers either Ready (with the command's PID inside) or nothing at all (it
// prints its own error and exits 125, 126 or 127). With --tty, a PTY message carrying the terminal's master fd
// comes before Ready.
package wire

import (
	"encoding/json"
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

// maxMessage bounds one datagram; the Config with its generated files is far smaller.
const maxMessage = 1 << 20

// Message is one datagram.
type Message struct {
	Type   string          `json:"type"`             // "config", "pty", "ready"
	Config *config.Sandbox `json:"config,omitempty"` // with "config"
	PID    int             `json:"pid,omitempty"`    // with "ready": the command's PID inside
}

// Pair returns a connected SOCK_SEQPACKET socket pair, both ends close-on-exec; exec.Cmd.ExtraFiles clears the flag
// on the copy it passes down.
func Pair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "caisson-parent"), os.NewFile(uintptr(fds[1]), "caisson-init"), nil
}

// Send writes m as one datagram, with fds attached when given.
func Send(f *os.File, m Message, fds ...int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxMessage {
		return fmt.Errorf("message %s is too large (%d bytes)", m.Type, len(b))
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(int(f.Fd()), b, oob, nil, 0)
}

// ErrClosed means the other end closed the socket (the peer exited).
var ErrClosed = errors.New("peer closed the socket")

// Recv reads one datagram; fds received with it are returned (the caller owns them).
func Recv(f *os.File) (Message, []int, error) {
	var m Message
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(int(f.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	for errors.Is(err, unix.EINTR) {
		n, oobn, _, _, err = unix.Recvmsg(int(f.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	}
	if err != nil {
		return m, nil, err
	}
	if n == 0 {
		return m, nil, ErrClosed
	}
	var fds []int
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return m, nil, err
		}
		for _, c := range cmsgs {
			got, err := unix.ParseUnixRights(&c)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return m, nil, fmt.Errorf("bad message: %w", err)
	}
	return m, fds, nil
}
