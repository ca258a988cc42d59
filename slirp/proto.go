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
//	byte 1    0 = dial tcp, 1 = dial udp, 2 = new tcp sockets
//	byte 2    0 = 127.0.0.1 (AF_INET), 1 = ::1 (AF_INET6)
//	byte 3    0 (reserved)
//	byte 4-5  dial: sandbox port; new sockets: how many (1..maxSocketBatch); big endian
//
// For a dial, init connects inside the sandbox and answers on the received
// socket with one message: protoVersion, then 0 and the connected socket
// attached, or 1 followed by an error text (at most maxReplyText bytes). For
// new sockets, it answers protoVersion, 0 and that many unconnected
// non-blocking TCP sockets of the family, created in the sandbox's network
// namespace: the parent connects them to the sandbox's loopback itself (a
// socket connects in the namespace it was created in), so a published TCP
// port costs no round trip to init per connection, only one per batch.
const (
	protoVersion   = 1
	requestLen     = 6
	maxReplyText   = 512
	maxSocketBatch = 32
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
	maxTrailingFDs   = 8  // fds received per request message before giving up (cmsg space)
	socketPoolBatch  = 16 // unconnected sandbox sockets fetched per request
	socketPoolLow    = 4  // a refill starts when the pool holds fewer
	socketPoolMax    = 64 // sockets kept in a pool at most
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

// dialRequest asks init for a socket connected to the sandbox's loopback or,
// with sockets > 0, for that many unconnected TCP sockets.
type dialRequest struct {
	udp     bool
	v6      bool
	port    uint16
	sockets int
}

func (r dialRequest) marshal() []byte {
	n := r.port
	if r.sockets > 0 {
		n = uint16(r.sockets)
	}
	b := []byte{protoVersion, 0, 0, 0, byte(n >> 8), byte(n)}
	switch {
	case r.sockets > 0:
		b[1] = 2
	case r.udp:
		b[1] = 1
	}
	if r.v6 {
		b[2] = 1
	}
	return b
}

func parseDialRequest(b []byte) (dialRequest, error) {
	if len(b) != requestLen || b[0] != protoVersion || b[1] > 2 || b[2] > 1 || b[3] != 0 {
		return dialRequest{}, fmt.Errorf("malformed request (%d bytes)", len(b))
	}
	n := uint16(b[4])<<8 | uint16(b[5])
	r := dialRequest{udp: b[1] == 1, v6: b[2] == 1, port: n}
	if b[1] == 2 {
		if n == 0 || n > maxSocketBatch {
			return dialRequest{}, fmt.Errorf("malformed request: %d sockets", n)
		}
		return dialRequest{v6: r.v6, sockets: int(n)}, nil
	}
	if r.port == 0 {
		return dialRequest{}, errors.New("malformed request: port 0")
	}
	return r, nil
}

// family is the request's address family.
func (r dialRequest) family() int {
	if r.v6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// sockaddr is the sandbox's loopback address at the request's port.
func (r dialRequest) sockaddr() unix.Sockaddr {
	if r.v6 {
		return &unix.SockaddrInet6{Port: int(r.port), Addr: [16]byte{15: 1}}
	}
	return &unix.SockaddrInet4{Port: int(r.port), Addr: [4]byte{127, 0, 0, 1}}
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
func readMsgFDs(c *net.UnixConn, buf []byte, maxFDs int) (n int, fds []int, err error) {
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
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
