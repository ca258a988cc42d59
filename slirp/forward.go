package slirp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// forwarder is the parent's half of the published-port forwarder: it listens
// on the host ports and gets connected sockets from ServeChild.
type forwarder struct {
	ctl     *net.UnixConn
	writeMu sync.Mutex // serialises requests on ctl (write deadline)

	mu      sync.Mutex
	closed  bool
	closers map[io.Closer]struct{} // listeners and live connections
	pools   [2]socketPool          // unconnected sandbox TCP sockets: IPv4, IPv6
	wg      sync.WaitGroup
}

// socketPool holds unconnected TCP sockets of the sandbox's network namespace
// (guarded by forwarder.mu).
type socketPool struct {
	fds     []int
	filling bool
}

// listenTCP listens on a host TCP address without multipath TCP.
func listenTCP(addr string) (*net.TCPListener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}

// newForwarder takes a dup of ctl (the parent end of NewForwarderPair).
func newForwarder(ctl *os.File) (*forwarder, error) {
	if err := checkSeqpacket(ctl); err != nil {
		return nil, err
	}
	c, err := fileConn(ctl)
	if err != nil {
		return nil, err
	}
	return &forwarder{ctl: c, closers: map[io.Closer]struct{}{}}, nil
}

// track registers c for close; it reports false (and closes c) when the
// forwarder is already closed.
func (f *forwarder) track(c io.Closer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.closers[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c io.Closer) {
	f.mu.Lock()
	delete(f.closers, c)
	f.mu.Unlock()
	c.Close()
}

func (f *forwarder) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// close stops listening, drops every connection, closes the control socket
// (ServeChild then returns) and waits up to forwardCloseWait for the
// goroutines.
func (f *forwarder) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	cs := f.closers
	f.closers = nil
	for i := range f.pools {
		closeFDs(f.pools[i].fds)
		f.pools[i].fds = nil
	}
	f.mu.Unlock()
	for c := range cs {
		c.Close()
	}
	f.ctl.Close()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(forwardCloseWait):
	}
}

// dial asks init for a socket connected to the sandbox's loopback.
func (f *forwarder) dial(req dialRequest) (*os.File, error) {
	fds, err := f.request(req)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "slirp-sandbox-conn"), nil
}

// request sends req to init and returns the sockets of its answer, each
// checked to be of the type and (for new sockets) the family asked for.
func (f *forwarder) request(req dialRequest) ([]int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	mine := os.NewFile(uintptr(fds[0]), "slirp-reply")
	rc, err := fileConn(mine)
	mine.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, err
	}
	defer rc.Close()
	f.writeMu.Lock()
	f.ctl.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, _, err = f.ctl.WriteMsgUnix(req.marshal(), unix.UnixRights(fds[1]), nil)
	f.writeMu.Unlock()
	unix.Close(fds[1])
	if err != nil {
		return nil, fmt.Errorf("send request to init: %w", err)
	}
	rc.SetReadDeadline(time.Now().Add(replyTimeout))
	want := 1
	if req.sockets > 0 {
		want = req.sockets
	}
	buf := make([]byte, 2+maxReplyText)
	n, got, err := readMsgFDs(rc, buf, want)
	if err != nil {
		return nil, fmt.Errorf("read answer from init: %w", err)
	}
	if n < 2 || buf[0] != protoVersion {
		closeFDs(got)
		return nil, errors.New("init closed the request without an answer")
	}
	if buf[1] != 0 {
		closeFDs(got)
		return nil, fmt.Errorf("init: %s", buf[2:n])
	}
	if len(got) != want {
		closeFDs(got)
		return nil, fmt.Errorf("init sent %d descriptors, want %d", len(got), want)
	}
	typ := unix.SOCK_STREAM
	if req.udp {
		typ = unix.SOCK_DGRAM
	}
	for _, fd := range got {
		t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		ok := err == nil && t == typ
		if ok && req.sockets > 0 {
			d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
			ok = err == nil && d == req.family()
		}
		if !ok {
			closeFDs(got)
			return nil, errors.New("init sent a socket of the wrong type")
		}
	}
	return got, nil
}

// takeSocket returns an unconnected TCP socket of the sandbox's network
// namespace from the pool, fetching a batch from init when the pool is empty
// and starting a refill in the background when it runs low.
func (f *forwarder) takeSocket(v6 bool) (int, error) {
	i := 0
	if v6 {
		i = 1
	}
	batch := dialRequest{v6: v6, sockets: socketPoolBatch}
	f.mu.Lock()
	p := &f.pools[i]
	if len(p.fds) == 0 {
		f.mu.Unlock()
		fds, err := f.request(batch)
		if err != nil {
			return -1, err
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			closeFDs(fds)
			return -1, net.ErrClosed
		}
		p.fds = append(p.fds, fds...)
	}
	var excess []int
	if len(p.fds) > socketPoolMax { // a burst on an empty pool fetched many batches at once
		excess = p.fds[socketPoolMax:]
		p.fds = p.fds[:socketPoolMax:socketPoolMax]
	}
	fd := p.fds[len(p.fds)-1]
	p.fds = p.fds[:len(p.fds)-1]
	refill := len(p.fds) < socketPoolLow && !p.filling && !f.closed
	if refill {
		p.filling = true
		f.wg.Add(1)
	}
	f.mu.Unlock()
	closeFDs(excess)
	if refill {
		go func() {
			defer f.wg.Done()
			fds, err := f.request(batch)
			f.mu.Lock()
			p.filling = false
			if err == nil && !f.closed {
				p.fds = append(p.fds, fds...)
				fds = nil
			}
			f.mu.Unlock()
			closeFDs(fds)
		}()
	}
	return fd, nil
}

// connectTCP connects a pooled sandbox socket to the sandbox's loopback at
// req's port (within dialTimeout) and returns it as a connection.
func (f *forwarder) connectTCP(req dialRequest) (*net.TCPConn, error) {
	fd, err := f.takeSocket(req.v6)
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), "slirp-sandbox-conn") // non-blocking: served by the runtime's poller
	defer file.Close()
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), req.sockaddr()) }); err != nil {
		return nil, err
	}
	if cerr == unix.EINPROGRESS || cerr == unix.EINTR {
		file.SetWriteDeadline(time.Now().Add(dialTimeout))
		err := rc.Write(func(fd uintptr) bool {
			soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				cerr = err
			case soerr == 0:
				if _, err := unix.Getpeername(int(fd)); err != nil {
					return false // not connected yet: wait until writable
				}
				cerr = nil
			case syscall.Errno(soerr) == unix.EINPROGRESS || syscall.Errno(soerr) == unix.EALREADY:
				return false
			default:
				cerr = syscall.Errno(soerr)
			}
			return true
		})
		if err != nil {
			return nil, err // the deadline passed, or the file was closed
		}
	}
	if cerr != nil {
		return nil, fmt.Errorf("connect to %s in the sandbox: %w", req.target(), cerr)
	}
	c, err := net.FileConn(file)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, errors.New("not a TCP connection")
	}
	return tc, nil
}

// dialConn is dial plus net.FileConn.
func (f *forwarder) dialConn(req dialRequest) (net.Conn, error) {
	file, err := f.dial(req)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return net.FileConn(file)
}

// publish listens on the spec's host address and starts serving it.
func (f *forwarder) publish(spec PortSpec) error {
	req := dialRequest{udp: spec.Proto == "udp", v6: spec.v6(), port: spec.SandboxPort}
	if req.udp {
		pc, err := net.ListenPacket("udp", spec.hostAddr())
		if err != nil {
			return err
		}
		if !f.track(pc) {
			return net.ErrClosed
		}
		f.wg.Add(1)
		go f.serveUDP(pc.(*net.UDPConn), req)
		return nil
	}
	l, err := listenTCP(spec.hostAddr())
	if err != nil {
		return err
	}
	if !f.track(l) {
		return net.ErrClosed
	}
	f.wg.Add(1)
	go f.serveTCP(l, req)
	return nil
}

// serveTCP accepts host connections until the listener is closed.
func (f *forwarder) serveTCP(l *net.TCPListener, req dialRequest) {
	defer f.wg.Done()
	sem := make(chan struct{}, maxConnsPerPort)
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if f.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond) // e.g. EMFILE: back off, retry
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			c.Close() // over the per-port limit
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() { <-sem }()
			f.proxyTCP(c, req)
		}()
	}
}

// proxyTCP copies bytes between a host connection and a sandbox connection,
// passing half-closes through.
func (f *forwarder) proxyTCP(c *net.TCPConn, req dialRequest) {
	if !f.track(c) {
		return
	}
	defer f.untrack(c)
	s, err := f.connectTCP(req)
	if err != nil {
		return // the client sees the connection closed
	}
	if !f.track(s) {
		return
	}
	defer f.untrack(s)
	done := make(chan struct{})
	pipe := func(dst, src *net.TCPConn) {
		_, err := io.Copy(dst, src) // splice(2) between the sockets
		if err != nil {
			dst.Close()
			src.Close()
		} else {
			dst.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(s, c)
	go pipe(c, s)
	<-done
	<-done
}

// udpFlow is one host client address with its own sandbox socket.
type udpFlow struct {
	conn *net.UDPConn
	mu   sync.Mutex
	last time.Time
}

func (fl *udpFlow) touch() {
	fl.mu.Lock()
	fl.last = time.Now()
	fl.mu.Unlock()
}

func (fl *udpFlow) idle() time.Duration {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return time.Since(fl.last)
}

// serveUDP relays datagrams: each host client address gets a connected UDP
// socket in the sandbox; replies go back to that client from the published
// address. Flows end after udpFlowIdle without traffic.
func (f *forwarder) serveUDP(pc *net.UDPConn, req dialRequest) {
	defer f.wg.Done()
	var mu sync.Mutex
	flows := map[netip.AddrPort]*udpFlow{}
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if f.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		mu.Lock()
		fl := flows[from]
		full := len(flows) >= maxFlowsPerPort
		mu.Unlock()
		if fl == nil {
			if full {
				continue // drop: too many flows
			}
			sc, err := f.dialConn(req)
			if err != nil {
				continue
			}
			uc, ok := sc.(*net.UDPConn)
			if !ok || !f.track(uc) {
				sc.Close()
				continue
			}
			fl = &udpFlow{conn: uc, last: time.Now()}
			mu.Lock()
			flows[from] = fl
			mu.Unlock()
			f.wg.Add(1)
			go func(key netip.AddrPort) {
				defer f.wg.Done()
				defer func() {
					mu.Lock()
					delete(flows, key)
					mu.Unlock()
					f.untrack(uc)
				}()
				rb := make([]byte, maxDatagram)
				for {
					uc.SetReadDeadline(time.Now().Add(udpFlowIdle))
					n, err := uc.Read(rb)
					if err != nil {
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() && fl.idle() < udpFlowIdle {
							continue
						}
						if errors.Is(err, unix.ECONNREFUSED) && !f.isClosed() {
							continue // ICMP port unreachable from an earlier datagram
						}
						return
					}
					fl.touch()
					pc.WriteToUDPAddrPort(rb[:n], key)
				}
			}(from)
		}
		fl.touch()
		fl.conn.Write(buf[:n])
	}
}
