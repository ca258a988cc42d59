package slirp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ServeChild serves the parent's requests for published ports. It runs
// in init, inside the sandbox's network namespace, for as long as init lives
// (typically in its own goroutine), and returns nil when the parent closes
// its end (Network.Close) or the error that made reading conn fail. conn is
// the child end of [NewForwarderPair]; ServeChild closes it before returning.
//
// For a TCP port it creates batches of unconnected sockets in the sandbox's
// network namespace, which the parent connects to the sandbox's loopback
// itself; for a UDP flow it connects to 127.0.0.1:PORT (::1 for IPv6 host
// addresses) inside the sandbox, with a 5 s connect timeout and at most 256
// requests in flight, and sends the connected socket back. It never connects
// anywhere else and needs no host path. It needs the sandbox's loopback
// interface up ([BringUpLoopback]) and, under a seccomp filter, the system
// calls socket, connect, getsockopt, setsockopt, recvmsg, sendmsg, close.
func ServeChild(conn *os.File) error {
	defer conn.Close()
	if err := checkSeqpacket(conn); err != nil {
		return fmt.Errorf("slirp: serve child: %w", err)
	}
	c, err := fileConn(conn)
	if err != nil {
		return fmt.Errorf("slirp: serve child: %w", err)
	}
	defer c.Close()
	sem := make(chan struct{}, maxPendingDials)
	var wg sync.WaitGroup
	defer wg.Wait()
	buf := make([]byte, requestLen+1)
	for {
		n, fds, err := readMsgFDs(c, buf, maxTrailingFDs)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("slirp: serve child: %w", err)
		}
		if n == 0 && len(fds) == 0 {
			return nil // SOCK_SEQPACKET: zero-length read is the peer's close
		}
		if len(fds) != 1 {
			closeFDs(fds) // nowhere to answer; the parent times out
			continue
		}
		reply := os.NewFile(uintptr(fds[0]), "slirp-reply")
		req, perr := parseDialRequest(buf[:n])
		select {
		case sem <- struct{}{}:
		default:
			sendReply(reply, nil, errors.New("too many pending connects"))
			reply.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer reply.Close()
			if perr != nil {
				sendReply(reply, nil, perr)
				return
			}
			if req.sockets > 0 {
				fds, err := newSockets(req)
				sendFDs(reply, fds, err)
				closeFDs(fds)
				return
			}
			f, err := dialLoopback(req)
			sendReply(reply, f, err)
			if f != nil {
				f.Close()
			}
		}()
	}
}

// dialLoopback connects to the sandbox's loopback and returns the socket as
// a file (a dup of the connection's descriptor).
func dialLoopback(req dialRequest) (*os.File, error) {
	d := net.Dialer{Timeout: dialTimeout}
	d.SetMultipathTCP(false)
	c, err := d.Dial(req.network(), req.target())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	type filer interface{ File() (*os.File, error) }
	return c.(filer).File()
}

// newSockets creates the unconnected, non-blocking TCP sockets a request asks
// for, in this process's network namespace.
func newSockets(req dialRequest) ([]int, error) {
	fds := make([]int, 0, req.sockets)
	for range req.sockets {
		fd, err := unix.Socket(req.family(), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			closeFDs(fds)
			return nil, fmt.Errorf("socket: %w", err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// sendReply answers one request on the reply socket: the socket f, or err.
func sendReply(reply *os.File, f *os.File, err error) {
	if err != nil {
		sendFDs(reply, nil, err)
		return
	}
	// SyscallConn, not Fd: Fd would switch the shared file description to
	// blocking mode.
	frc, ferr := f.SyscallConn()
	if ferr == nil {
		ferr = frc.Control(func(sfd uintptr) { sendFDs(reply, []int{int(sfd)}, nil) })
	}
	if ferr != nil {
		sendFDs(reply, nil, errors.New("cannot pass socket"))
	}
}

// sendFDs answers one request on the reply socket: the descriptors fds, or
// err.
func sendFDs(reply *os.File, fds []int, err error) {
	rc, cerr := reply.SyscallConn()
	if cerr != nil {
		return
	}
	msg := []byte{protoVersion, 0}
	var oob []byte
	if err != nil {
		text := err.Error()
		if len(text) > maxReplyText {
			text = text[:maxReplyText]
		}
		msg[1] = 1
		msg = append(msg, text...)
	} else {
		oob = unix.UnixRights(fds...)
	}
	rc.Control(func(fd uintptr) {
		for range 4 { // bounded EINTR retries
			if unix.Sendmsg(int(fd), msg, oob, nil, unix.MSG_NOSIGNAL) != unix.EINTR {
				return
			}
		}
	})
}

// BringUpLoopback sets the "lo" interface of the calling process's network
// namespace up (the equivalent of `ip link set lo up`) with one rtnetlink
// request, without any external tool. Init calls it in every mode except
// ModeHost, before starting ServeChild. It is a no-op when lo is already up.
func BringUpLoopback() error {
	if err := setLinkUp("lo"); err != nil {
		return fmt.Errorf("slirp: bring up lo: %w", err)
	}
	return nil
}

// setLinkUp sends RTM_NEWLINK (IFF_UP) for the named link and waits for the
// kernel's acknowledgement.
func setLinkUp(name string) error {
	attr := append([]byte(name), 0)
	attrLen := unix.SizeofRtAttr + len(attr)
	body := make([]byte, unix.SizeofIfInfomsg+rtaAlign(attrLen))
	ne := binary.NativeEndian
	body[0] = unix.AF_UNSPEC
	ne.PutUint32(body[8:], unix.IFF_UP)  // ifi_flags
	ne.PutUint32(body[12:], unix.IFF_UP) // ifi_change
	rta := body[unix.SizeofIfInfomsg:]
	ne.PutUint16(rta[0:], uint16(attrLen))
	ne.PutUint16(rta[2:], unix.IFLA_IFNAME)
	copy(rta[unix.SizeofRtAttr:], attr)
	return netlinkRequest(unix.RTM_NEWLINK, 0, body)
}

// netlinkRequest sends one rtnetlink request (header added here) and waits for
// the kernel's acknowledgement (2 s receive timeout, at most 16 messages read).
func netlinkRequest(typ, flags uint16, body []byte) error {
	acked := false
	err := netlinkExchange(typ, unix.NLM_F_ACK|flags, body, 16, func(m syscall.NetlinkMessage) (bool, error) {
		if m.Header.Type != unix.NLMSG_ERROR {
			return false, nil
		}
		acked = true
		return true, netlinkErrno(m)
	})
	if err == nil && !acked {
		err = errors.New("netlink: no acknowledgement")
	}
	return err
}

// netlinkExchange sends one rtnetlink message (header added here) on a fresh
// socket and passes every message of the answer that carries its sequence
// number to fn until fn reports done (or fails), reading at most reads times
// with a 2 s timeout each.
func netlinkExchange(typ, flags uint16, body []byte, reads int, fn func(syscall.NetlinkMessage) (done bool, err error)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	const seq = 1
	b := make([]byte, unix.SizeofNlMsghdr+len(body))
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|flags)
	ne.PutUint32(b[8:], seq)
	copy(b[unix.SizeofNlMsghdr:], body)
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	rb := make([]byte, 32768)
	for range reads {
		n, _, err := unix.Recvfrom(fd, rb, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(rb[:n])
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			if done, err := fn(m); done || err != nil {
				return err
			}
		}
	}
	return nil
}

// netlinkErrno returns the error an NLMSG_ERROR message carries (nil for an
// acknowledgement).
func netlinkErrno(m syscall.NetlinkMessage) error {
	if len(m.Data) < 4 {
		return errors.New("netlink: short error message")
	}
	if errno := int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
		return unix.Errno(-errno)
	}
	return nil
}

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }
