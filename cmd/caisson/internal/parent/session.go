package parent

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/state"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/term"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/trim"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
	"golang.org/x/sys/unix"
)

// session is a running sandbox as its supervising caisson sees it: the socket to init, the state directory, the
// control socket that `caisson exec`, `stop` and `run --join` talk to, and the requests in flight.
type session struct {
	sock    *os.File // to init
	initPID int      // init's host PID
	entry   *state.Entry
	tty     *term.Terminal
	ready   chan struct{} // closed when init reports the command started
	// exitStatus is init's own report of the command's status ("exit"), -1 until it arrives.
	exitStatus int
	// cmdFD is a pidfd of the command once init reported it started (-1 before): signals go straight to it.
	cmdFD  int
	inited chan struct{} // closed when init's socket closes
	// asPID1 is --as-pid-1: the command replaced init, so nothing can be started in the sandbox.
	asPID1 bool
	// ending, when set, runs as soon as init reports the sandbox's final status, just before init exits (guarded
	// by mu): the network helper is killed then, so that its exit overlaps init's.
	ending func()

	mu      sync.Mutex
	clients map[string]*client
	nextID  int
	stops   chan stopRequest
	ln      *os.File
}

type client struct {
	conn *os.File
	join bool
}

type stopRequest struct {
	grace time.Duration
	conn  *os.File
	done  chan struct{} // closed once the answer was sent
}

func newSession(sock *os.File, initPID int, entry *state.Entry, tty *term.Terminal) *session {
	return &session{sock: sock, initPID: initPID, entry: entry, tty: tty, ready: make(chan struct{}),
		exitStatus: -1, cmdFD: -1, inited: make(chan struct{}), clients: map[string]*client{}, stops: make(chan stopRequest, 4)}
}

// readInit handles init's messages: the command's terminal and readiness, the final status, and the answers to
// requests, relayed to the client that asked.
func (s *session) readInit() {
	defer close(s.inited)
	readyOnce := sync.Once{}
	for {
		m, fds, err := wire.Recv(s.sock)
		if err != nil {
			readyOnce.Do(func() {}) // never ready
			return
		}
		if m.ID == "" {
			switch {
			case m.Type == "pty" && s.tty != nil && len(fds) == 1:
				s.tty.Attach(os.NewFile(uintptr(fds[0]), "pty"))
				fds = nil
			case m.Type == "ready":
				// A pidfd cannot be misdirected to a recycled PID: signals forwarded later reach this command.
				if pid := hostPID(s.initPID, m.PID); pid > 0 {
					if fd, err := unix.PidfdOpen(pid, 0); err == nil {
						s.mu.Lock()
						s.cmdFD = fd
						s.mu.Unlock()
					}
					s.entry.Record.CommandPID = pid // for `caisson inspect NAME`
				}
				s.entry.Record.InitPID = s.initPID
				if err := s.entry.Save(); err != nil {
					fmt.Fprintf(os.Stderr, "caisson: warning: %v\n", err)
				}
				readyOnce.Do(func() { close(s.ready) })
			case m.Type == "exit":
				s.mu.Lock()
				s.exitStatus = m.Status
				ending := s.ending
				s.mu.Unlock()
				if ending != nil {
					ending()
				}
				// The sandbox is ending: its state goes now, while the kernel takes init's namespaces down,
				// rather than after (Run removes it again on every path; removing twice is harmless).
				s.entry.Remove()
			}
			closeAll(fds)
			continue
		}
		s.mu.Lock()
		c := s.clients[m.ID]
		if m.Type == "exited" || m.Type == "failed" {
			delete(s.clients, m.ID)
		}
		s.mu.Unlock()
		if c != nil {
			if m.Type == "started" && c.join {
				// init names the joined sandbox's init by its PID in this sandbox; the client needs the host's.
				m.PID = hostPID(s.initPID, m.PID)
			}
			_ = wire.Send(c.conn, m, fds...)
		}
		closeAll(fds)
	}
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// hostPID finds, among the children of the host process parent, the one whose PID in parent's PID namespace is
// inner. NSpid lists a process's PID in each namespace from the host's down to its own; parent's namespace is at
// the depth of parent's own NSpid line (a child may sit one level deeper, in a namespace of its own).
func hostPID(parent, inner int) int {
	buf := make([]byte, 4096) // /proc/PID/status is ~1.5 KB: one buffer for the three reads
	depth := len(nspid(parent, buf))
	if depth == 0 {
		return 0
	}
	// init forks everything from its main thread, whose children are listed under its own task.
	kids, _ := readProc(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent), buf)
	for _, k := range strings.Fields(string(kids)) {
		n, _ := strconv.Atoi(k)
		if f := nspid(n, buf); len(f) >= depth && f[depth-1] == strconv.Itoa(inner) {
			return n
		}
	}
	return 0
}

// readProc reads a /proc file into buf, or, when buf is too small, all of it into a new buffer.
func readProc(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
	return os.ReadFile(path)
}

// nspid returns the fields of the NSpid line of /proc/PID/status.
func nspid(pid int, buf []byte) []string {
	st, _ := readProc(fmt.Sprintf("/proc/%d/status", pid), buf)
	if i := bytes.Index(st, []byte("\nNSpid:")); i >= 0 {
		line, _, _ := bytes.Cut(st[i+len("\nNSpid:"):], []byte{'\n'})
		return strings.Fields(string(line))
	}
	return nil
}

// begin opens the control socket, sends init its configuration once caisson's signal handlers are registered,
// and starts reading init's messages (and, for a detached sandbox, reporting readiness to the foreground). The
// returned function ends all that; call it before returning.
func (s *session) begin(sb *config.Sandbox, detach bool, notified <-chan struct{}) (done func(), err error) {
	if err := s.listen(); err != nil {
		return nil, err
	}
	<-notified
	if err := wire.Send(s.sock, wire.Message{Type: "config", Config: sb}); err != nil {
		s.close()
		return nil, fmt.Errorf("send configuration to the sandbox: %w", err)
	}
	go s.readInit()
	reported := make(chan struct{})
	if detach {
		go reportReady(s, reported)
	} else {
		close(reported)
	}
	return func() {
		<-reported
		s.close()
	}, nil
}

// listen opens the control socket and serves it until the session ends.
func (s *session) listen() error {
	path := s.entry.Socket()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	s.ln = wire.Pollable(fd, path)
	rc, err := s.ln.SyscallConn()
	if err != nil {
		s.ln.Close()
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	go func() {
		for {
			var nfd int
			var aerr error
			// Waiting for a client parks this goroutine in the runtime's poller; Close ends the wait.
			if err := rc.Read(func(fd uintptr) bool {
				nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
				return aerr != unix.EAGAIN
			}); err != nil {
				return
			}
			if aerr == unix.EINTR || aerr == unix.ECONNABORTED {
				continue
			}
			if aerr != nil {
				return
			}
			go s.serve(wire.Pollable(nfd, "control-client"))
		}
	}()
	return nil
}

// close stops the control socket.
func (s *session) close() {
	if s.ln != nil {
		s.ln.Close()
	}
}

// serve handles one client connection. When the client goes away, the commands it started are killed.
func (s *session) serve(conn *os.File) {
	defer conn.Close()
	// Only the sandbox's owner may talk to it (the socket's directory is 0700 already).
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	var cred *unix.Ucred
	_ = rc.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || cred == nil || int(cred.Uid) != os.Getuid() {
		return
	}
	var mine []string
	for {
		m, fds, err := wire.Recv(conn)
		if err != nil {
			break
		}
		switch m.Type {
		case "exec", "join":
			if s.asPID1 {
				_ = wire.Send(conn, wire.Message{Type: "failed", ID: m.ID, Code: ExitSetup,
					Error: "the sandbox runs its command as PID 1 (--as-pid-1): there is no init to start processes in it"})
				break
			}
			s.mu.Lock()
			s.nextID++
			m.ID = strconv.Itoa(s.nextID)
			s.clients[m.ID] = &client{conn: conn, join: m.Type == "join"}
			s.mu.Unlock()
			mine = append(mine, m.ID)
			if err := wire.Send(s.sock, m, fds...); err != nil {
				_ = wire.Send(conn, wire.Message{Type: "failed", ID: m.ID, Code: ExitSetup, Error: "the sandbox is gone"})
			}
		case "signal":
			if contains(mine, m.ID) {
				_ = wire.Send(s.sock, m)
			}
		case "stop":
			st := stopRequest{grace: time.Duration(m.Grace) * time.Millisecond, conn: conn, done: make(chan struct{})}
			s.stops <- st
			<-st.done // keep conn open until the answer is sent
		}
		closeAll(fds)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range mine {
		if c := s.clients[id]; c != nil && !c.join {
			_ = wire.Send(s.sock, wire.Message{Type: "signal", ID: id, Signal: int(syscall.SIGKILL)})
		}
		delete(s.clients, id)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// wait supervises the running sandbox until init is gone and returns caisson's exit code: it forwards signals to
// init, reports a network helper's death, and carries out `caisson stop` (SIGTERM to the command, SIGKILL to the
// whole sandbox after the grace period), answering every stopper with the final status.
func (s *session) wait(sigs chan os.Signal, waited <-chan int, netExited <-chan error, killInit func()) int {
	var stoppers []stopRequest
	var killTimer <-chan time.Time
	late := time.After(LateSignalDelay)
	idle := time.After(trim.Delay) // the start-up's memory goes back once the sandbox has run a while
	early := 0                     // 128+N when a signal ended the sandbox because the command could not be signalled
	// Signals that arrive before init reports the command started wait for it: none is lost, none is early.
	var pending []unix.Signal
	ready := s.ready
	deliver := func(sig unix.Signal) {
		if s.signalCommand(sig) {
			return
		}
		switch sig {
		case unix.SIGCONT, unix.SIGWINCH, unix.SIGURG, unix.SIGCHLD:
		default:
			early = 128 + int(sig)
			killInit()
		}
	}
	defer func() {
		s.mu.Lock()
		if s.cmdFD >= 0 {
			unix.Close(s.cmdFD)
			s.cmdFD = -1
		}
		s.mu.Unlock()
	}()
	for {
		select {
		case err := <-netExited:
			// The sandbox keeps running without a network (its connections fail at once); say why.
			netExited = nil
			if err != nil {
				fmt.Fprintf(os.Stderr, "caisson: network helper exited: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			}
		case sig := <-sigs:
			if sig == unix.SIGWINCH && s.tty != nil {
				s.tty.Resize()
				continue
			}
			if ready != nil {
				pending = append(pending, sig.(unix.Signal))
				continue
			}
			deliver(sig.(unix.Signal))
		case <-ready:
			ready = nil
			for _, sig := range pending {
				deliver(sig)
			}
			pending = nil
		case st := <-s.stops:
			stoppers = append(stoppers, st)
			if ready != nil {
				pending = append(pending, unix.SIGTERM)
			} else {
				deliver(unix.SIGTERM)
			}
			if killTimer == nil {
				killTimer = time.After(st.grace)
			}
		case <-killTimer:
			killInit()
		case <-late:
			go NotifyLate(sigs)
		case <-idle:
			trim.Idle()
		case code := <-waited:
			if early != 0 {
				code = early
			}
			if s.tty != nil {
				s.tty.Close()
			}
			for _, st := range stoppers {
				_ = wire.Send(st.conn, wire.Message{Type: "exited", Status: code})
				close(st.done)
			}
			return code
		}
	}
}

// signalCommand sends sig to the command through its pidfd; false when the command has not started yet.
func (s *session) signalCommand(sig unix.Signal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmdFD < 0 {
		return false
	}
	_ = unix.PidfdSendSignal(s.cmdFD, sig, nil, 0)
	return true
}
