package slirp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Options configures Start.
type Options struct {
	// Mode selects the helper (see [Mode]).
	Mode Mode
	// PID is the host PID of the sandbox's init: its /proc/PID/ns/user and
	// /proc/PID/ns/net are joined by the helper. Its uid/gid maps must be
	// written already. Required for pasta and slirp4netns.
	PID int
	// Publish lists the published ports. Not allowed with ModeHost.
	Publish []PortSpec
	// AllowHostLoopback lets the sandbox reach the host's 127.0.0.1 through
	// the gateway address (GuestConfig.HostLoopback). Default false: host
	// loopback services are unreachable from the sandbox.
	AllowHostLoopback bool
	// MTU of the sandbox interface, 1280-65520; 0 means DefaultMTU.
	MTU int
	// ChildConn is the parent end of NewForwarderPair, needed when Publish is
	// not empty. Start takes ownership: it is closed by Close, or by Start
	// when Start fails.
	ChildConn *os.File
	// Stderr receives the helper's full output when it fails to start or
	// dies while running (nil: discarded). Errors quote the last part of it.
	Stderr io.Writer
	// HelperPath is the helper binary to run; "" looks up "pasta" or
	// "slirp4netns" in $PATH.
	HelperPath string
	// ReadyTimeout bounds the wait for the helper to be ready; 0 means 5 s.
	ReadyTimeout time.Duration
}

// Network is a started sandbox network: the helper process (if any) and the
// published-port forwarder.
type Network struct {
	mode   Mode
	guest  GuestConfig
	helper *helper
	fwd    *forwarder
	conn   *os.File // Options.ChildConn
	stderr io.Writer

	exited chan error

	pidfd   int      // init's pidfd, -1 when not watched
	wakeW   *os.File // closed to stop the init watcher
	watchWG sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	release   atomic.Bool // shutdown kills the helper without waiting (Release)
}

// Start launches the helper for o.Mode against the namespaces of o.PID,
// waits (bounded by o.ReadyTimeout and ctx) until the helper has configured
// the sandbox interface (pasta --config-net, slirp4netns --configure), then
// listens on the published host ports. ctx only bounds Start; it does not
// stop the network later. On any error nothing is left running and
// o.ChildConn is closed.
//
// Start may be called from any goroutine: the helper is forked from a
// dedicated goroutine locked to its OS thread until the helper has been
// reaped, so the helper's Pdeathsig (SIGKILL) fires only when the parent
// process dies. The same rule holds for the caller's own Pdeathsig children
// (the sandbox init): fork them from a thread that outlives them, e.g. the
// main goroutine locked to the main thread for the whole run, because a
// goroutine that exits while locked to a thread destroys that thread and
// thereby kills every Pdeathsig child forked from it.
func Start(ctx context.Context, o Options) (_ *Network, err error) {
	n := &Network{mode: o.Mode, conn: o.ChildConn, stderr: o.Stderr, exited: make(chan error, 1), pidfd: -1}
	if n.stderr == nil {
		n.stderr = io.Discard
	}
	defer func() {
		if err != nil {
			n.shutdown(true)
		}
	}()
	if !o.Mode.valid() {
		_, err := ParseMode(string(o.Mode))
		return nil, err
	}
	if o.Mode == ModeHost && len(o.Publish) > 0 {
		return nil, errors.New("slirp: published ports are not supported with network mode host")
	}
	if err := validatePublish(o.Publish, hostPortEnv(), false); err != nil {
		return nil, err
	}
	if len(o.Publish) > 0 && o.ChildConn == nil {
		return nil, errors.New("slirp: published ports need Options.ChildConn (see NewForwarderPair)")
	}
	mtu := o.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 1280 || mtu > 65520 {
		return nil, fmt.Errorf("slirp: mtu %d out of range 1280-65520", o.MTU)
	}
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = defaultReadyTimeout
	}

	if o.Mode.helper() {
		path, err := helperPath(o.Mode, o.HelperPath)
		if err != nil {
			return nil, err
		}
		if err := n.watchInit(o.PID); err != nil {
			return nil, err
		}
		if err := checkNamespaces(o.PID); err != nil {
			return nil, err
		}
		switch o.Mode {
		case ModePasta:
			n.helper, err = startPasta(ctx, path, o.PID, mtu, o.AllowHostLoopback, timeout)
		case ModeSlirp4netns:
			n.helper, err = startSlirp4netns(ctx, path, o.PID, mtu, o.AllowHostLoopback, timeout)
		}
		if err == nil {
			err = waitConfigured(ctx, n.helper, o.PID, time.Now().Add(timeout))
		}
		if err != nil {
			if n.helper != nil {
				n.helper.writeOutput(n.stderr)
			}
			return nil, err
		}
		n.guest = PlannedGuest(o.Mode, mtu, o.AllowHostLoopback)
	}
	if o.ChildConn != nil {
		if n.fwd, err = newForwarder(o.ChildConn); err != nil {
			return nil, fmt.Errorf("slirp: ChildConn: %w", err)
		}
		for _, p := range o.Publish {
			if err := n.fwd.publish(p); err != nil {
				return nil, fmt.Errorf("slirp: publish %s: %w", p, err)
			}
		}
	}
	n.watchHelper()
	n.startInitWatcher()
	return n, nil
}

// PlannedGuest is the guest configuration Start gives a sandbox in mode (with mtu 0 meaning DefaultMTU), known
// before the helper starts: the sandbox's files and address guards can be prepared while it starts. It is empty
// for the modes without a helper.
func PlannedGuest(mode Mode, mtu int, allowHostLoopback bool) GuestConfig {
	if !mode.helper() {
		return GuestConfig{}
	}
	if mtu == 0 {
		mtu = DefaultMTU
	}
	g := GuestConfig{IfName: guestIfName, IP: guestIP, PrefixLen: guestPrefixLen, Gateway: guestGateway, DNS: guestDNS, MTU: mtu}
	if allowHostLoopback {
		g.HostLoopback = guestGateway
	}
	return g
}

// waitConfigured checks, in /proc/PID/net/route, that the helper has
// installed the default route through the guest interface, the last step of
// pasta --config-net and slirp4netns --configure; both signal readiness
// after it, so this normally succeeds at once. It polls every 5 ms until
// the deadline; when the file cannot be read it trusts the helper.
func waitConfigured(ctx context.Context, h *helper, pid int, deadline time.Time) error {
	path := "/proc/" + strconv.Itoa(pid) + "/net/route"
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && f[0] == guestIfName && f[1] == "00000000" {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			err := h.failure("start", fmt.Errorf("ready, but no default route via %s in %s", guestIfName, path))
			return errors.Join(err, h.terminate())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// helperPath resolves the helper binary for mode.
func helperPath(mode Mode, override string) (string, error) {
	d := drivers[mode]
	if override != "" {
		if !filepath.IsAbs(override) {
			return "", fmt.Errorf("slirp: helper path %q is not absolute", override)
		}
		return override, nil
	}
	path, err := exec.LookPath(d.binary)
	if err != nil {
		return "", notFound(d, err)
	}
	if !filepath.IsAbs(path) {
		if path, err = filepath.Abs(path); err != nil {
			return "", fmt.Errorf("slirp: %w", err)
		}
	}
	return path, nil
}

// checkNamespaces refuses a PID that shares our user or network namespace:
// the helper would otherwise act on the host's network.
func checkNamespaces(pid int) error {
	for _, ns := range []string{"user", "net"} {
		var self, other unix.Stat_t
		if err := unix.Stat("/proc/self/ns/"+ns, &self); err != nil {
			return fmt.Errorf("slirp: %w", &os.PathError{Op: "stat", Path: "/proc/self/ns/" + ns, Err: err})
		}
		p := "/proc/" + strconv.Itoa(pid) + "/ns/" + ns
		if err := unix.Stat(p, &other); err != nil {
			return fmt.Errorf("slirp: sandbox init: %w", &os.PathError{Op: "stat", Path: p, Err: err})
		}
		if self.Dev == other.Dev && self.Ino == other.Ino {
			return fmt.Errorf("slirp: process %d is in this process's %s namespace, not a sandbox's", pid, ns)
		}
	}
	return nil
}

// watchInit opens a pidfd for init, so its exit can be seen without races
// against PID reuse.
func (n *Network) watchInit(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("slirp: invalid sandbox init pid %d", pid)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("slirp: sandbox init pid %d: %w", pid, err)
		}
		return nil // pidfd_open unsupported (Linux < 5.3): no watcher
	}
	n.pidfd = fd
	return nil
}

// startInitWatcher stops the network as soon as init has exited. With
// bookworm's pasta this is what keeps the helper from outliving the sandbox
// when Close is not called in time.
func (n *Network) startInitWatcher() {
	if n.pidfd < 0 {
		return
	}
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	n.wakeW = w
	pidfd := n.pidfd
	n.pidfd = -1 // owned by the watcher from now on
	n.watchWG.Add(1)
	go func() {
		defer n.watchWG.Done()
		defer unix.Close(pidfd)
		defer r.Close()
		rc, err := r.SyscallConn()
		if err != nil {
			return
		}
		var initExited bool
		rc.Control(func(wfd uintptr) {
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}, {Fd: int32(wfd), Events: unix.POLLIN}}
			for range 1000 { // retried on EINTR only
				_, err := unix.Poll(fds, -1)
				if err == unix.EINTR {
					continue
				}
				initExited = err == nil && fds[0].Revents != 0
				return
			}
		})
		if initExited {
			// The sandbox is gone: kill the helper, and let nobody wait for its slow exit.
			n.release.Store(true)
			n.shutdown(false)
		}
	}()
}

// watchHelper reports an unexpected helper exit on n.exited and closes the
// channel once the helper is gone.
func (n *Network) watchHelper() {
	h := n.helper
	if h == nil {
		return
	}
	go func() {
		<-h.done
		if !h.stop.Load() {
			h.writeOutput(n.stderr)
			cause := h.werr
			if cause == nil {
				cause = errors.New("exit status 0")
			}
			n.exited <- h.failure(fmt.Sprintf("(pid %d) exited while the sandbox was running", h.pid()), cause)
		}
		close(n.exited)
	}()
}

// Guest returns the network as seen from inside the sandbox, to be sent to
// init. It is the zero value for ModeNone and ModeHost.
func (n *Network) Guest() GuestConfig { return n.guest }

// Mode returns the network mode.
func (n *Network) Mode() Mode { return n.mode }

// HelperPID returns the helper's host PID, 0 for ModeNone and ModeHost.
func (n *Network) HelperPID() int {
	if n.helper == nil {
		return 0
	}
	return n.helper.pid()
}

// Exited returns a channel that reports the helper's end. If the helper
// dies while the sandbox is running (crash, OOM kill, someone's kill -9),
// the channel delivers one non-nil error quoting the helper's argv and
// output, which is also copied to Options.Stderr, and is then closed.
// Published ports keep working; the sandbox loses its other network access.
// When the helper is stopped by Close, or because init exited, the channel
// is closed without a value (a receive yields nil). For ModeNone and
// ModeHost it is closed by Close.
func (n *Network) Exited() <-chan error { return n.exited }

// Close stops the init watcher, the forwarder (host listeners and
// connections; ServeChild then returns) and the helper (slirp4netns: its
// exit fd is closed; both: SIGKILL), and waits for them. It is idempotent and safe for concurrent use; every call returns the
// first call's result.
func (n *Network) Close() error {
	n.shutdown(true)
	return n.closeErr
}

// Release is Close for caisson's exit path: the helper is killed (SIGKILL) but not waited for, so that the
// kernel's removal of the helper's tap device (tens of milliseconds) overlaps the caller's own clean-up; the
// helper is reaped in the background by this process. Forwarders stop at once. Call Wait before the process
// exits, so that the helper is not left behind as a zombie.
func (n *Network) Release() {
	n.release.Store(true)
	n.shutdown(false)
}

// Wait waits, at most limit, until the helper (if any) has been reaped: after Release, Close, or the helper's own
// death. It returns at once when there is no helper or it is gone already, and an error naming the helper when
// limit passes first. It does not stop the helper.
func (n *Network) Wait(limit time.Duration) error {
	if n == nil || n.helper == nil {
		return nil
	}
	select {
	case <-n.helper.done:
		return nil
	default:
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-n.helper.done:
		return nil
	case <-t.C:
		return fmt.Errorf("slirp: %s (pid %d) has not exited after %v", n.helper.name, n.helper.pid(), limit)
	}
}

// shutdown implements Close; wait is false when called from the init
// watcher, which must not wait for itself.
func (n *Network) shutdown(wait bool) {
	n.closeOnce.Do(func() {
		if n.wakeW != nil {
			n.wakeW.Close()
		}
		if n.fwd != nil {
			n.fwd.close()
		}
		if n.conn != nil {
			n.conn.Close()
		}
		if n.helper != nil && n.release.Load() {
			n.helper.kill()
		} else if n.helper != nil {
			n.closeErr = n.helper.terminate()
		} else {
			close(n.exited)
		}
		if n.pidfd >= 0 {
			unix.Close(n.pidfd)
			n.pidfd = -1
		}
	})
	if wait {
		n.watchWG.Wait()
	}
}
