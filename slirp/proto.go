package slirp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Wire protocol between the parent's forwarder and ServeChild.
//
// The control socket is a SOCK_SEQPACKET socket pair ([NewForwarderPair]).
// For every connection the parent creates a fresh SOCK_SEQPACKET pair, keeps
// one end and sends the other end to init, attached (SCM_RIGHTS) to one
// request message:
//
//	byte 0    protoVersion
//	byte 1    0 = tcp, 1 = udp
//	byte 2    0 = dial 127.0.0.1, 1 = dial ::1
//	byte 3    0 (reserved)
//	byte 4-5  sandbox port, big endian
//
// Init dials inside the sandbox and answers on the received socket with one
// message: protoVersion, then 0 and the connected socket attached, or 1
// followed by an error text (at most maxReplyText bytes).
const (
	protoVersion = 1
	requestLen   = 6
	maxReplyText = 512
)

// Bounds of the forwarder.
const (
	dialTimeout      = 5 * time.Second  // init's connect to the sandbox service
	replyTimeout     = 10 * time.Second // parent waits for init's answer
	maxPendingDials  = 256              // concurrent dials served by init
	maxConnsPerPort  = 1024             // concurrent TCP connections per published port
	maxFlowsPerPort  = 256              // concurrent UDP flows per published port
	udpFlowIdle      = 60 * time.Second // idle UDP flow is dropped
	maxDatagram      = 65535
	maxTrailingFDs   = 8 // fds received per message before giving up (cmsg space)
	forwardCloseWait = 2 * time.Second
)

// NewForwarderPair creates the socket pair that connects the parent's port
// forwarder to [ServeChild] (a close-on-exec AF_UNIX SOCK_SEQPACKET pair).
// Pass parent as [Options.ChildConn] and child to init (e.g. in
// exec.Cmd.ExtraFiles, which clears close-on-exec for the child only); close
// the parent's copy of child once init has started.
func NewForwarderPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("slirp: forwarder socket pair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "slirp-forwarder-parent"), os.NewFile(uintptr(fds[1]), "slirp-forwarder-child"), nil
}

// dialRequest asks init for a socket connected to the sandbox's loopback.
type dialRequest struct {
	udp  bool
	v6   bool
	port uint16
}

func (r dialRequest) marshal() []byte {
	b := []byte{protoVersion, 0, 0, 0, byte(r.port >> 8), byte(r.port)}
	if r.udp {
		b[1] = 1
	}
	if r.v6 {
		b[2] = 1
	}
	return b
}

func parseDialRequest(b []byte) (dialRequest, error) {
	if len(b) != requestLen || b[0] != protoVersion || b[1] > 1 || b[2] > 1 || b[3] != 0 {
		return dialRequest{}, fmt.Errorf("malformed request (%d bytes)", len(b))
	}
	r := dialRequest{udp: b[1] == 1, v6: b[2] == 1, port: uint16(b[4])<<8 | uint16(b[5])}
	if r.port == 0 {
		return dialRequest{}, errors.New("malformed request: port 0")
	}
	return r, nil
}

func (r dialRequest) network() string {
	if r.udp {
		return "udp"
	}
	return "tcp"
}

func (r dialRequest) target() string {
	ip := "127.0.0.1"
	if r.v6 {
		ip = "::1"
	}
	return net.JoinHostPort(ip, fmt.Sprint(r.port))
}

// checkSeqpacket verifies that f is an AF_UNIX SOCK_SEQPACKET socket.
func checkSeqpacket(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var typ, dom int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); serr != nil {
			return
		}
		dom, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	if dom != unix.AF_UNIX || typ != unix.SOCK_SEQPACKET {
		return errors.New("not an AF_UNIX SOCK_SEQPACKET socket (use NewForwarderPair)")
	}
	return nil
}

// fileConn turns f into a *net.UnixConn (a dup; f stays owned by the caller).
func fileConn(f *os.File) (*net.UnixConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s is not a unix socket", f.Name())
	}
	return uc, nil
}

// readMsgFDs reads one message and the file descriptors attached to it.
// All received descriptors are returned (the caller closes them); a message
// with truncated control data is an error and its descriptors are closed.
func readMsgFDs(c *net.UnixConn, buf []byte) (n int, fds []int, err error) {
	oob := make([]byte, unix.CmsgSpace(4*maxTrailingFDs))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for i := range msgs {
				if got, rerr := unix.ParseUnixRights(&msgs[i]); rerr == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	if err == nil && flags&(unix.MSG_CTRUNC|unix.MSG_TRUNC) != 0 {
		err = errors.New("message or control data truncated")
	}
	if err != nil {
		closeFDs(fds)
		return 0, nil, err
	}
	return n, fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
