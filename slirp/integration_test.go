package slirp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// skipOrFail skips with a precise reason, or fails when
// CAISSON_TEST_STRICT=1.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CAISSON_TEST_STRICT") == "1" {
		t.Fatalf("requirement not met (CAISSON_TEST_STRICT=1): "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// requireRootless checks what the namespace tests need: an unprivileged
// user and nsenter.
func requireRootless(t testing.TB) {
	t.Helper()
	if os.Getuid() == 0 {
		skipOrFail(t, "running as root; needs an unprivileged user with user namespaces (e.g. su caissontest)")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		skipOrFail(t, "nsenter (util-linux) not found in $PATH: %v", err)
	}
}

// requireMode checks that the helper of mode is installed and usable.
func requireMode(t testing.TB, mode Mode) {
	t.Helper()
	requireRootless(t)
	if f := Detect(mode); f.Err != nil {
		skipOrFail(t, "%s not usable: %v", mode, f.Err)
	}
}

var helperModes = []Mode{ModePasta, ModeSlirp4netns}

// fakeInit is a sandbox init (this test binary in role "init") in a new
// user and network namespace with a single-id mapping.
type fakeInit struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   int
	// release lets the thread that forked the fake init go once it is reaped.
	release chan struct{}
	conn    *os.File // parent end of the forwarder pair, nil without
}

func startInit(t testing.TB, id string, withFwd bool) *fakeInit {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=init", "CAISSON_SLIRP_TEST_ID="+id)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	fi := &fakeInit{cmd: cmd}
	var child *os.File
	if withFwd {
		var err error
		if fi.conn, child, err = NewForwarderPair(); err != nil {
			t.Fatal(err)
		}
		cmd.ExtraFiles = []*os.File{child}
		cmd.Env = append(cmd.Env, "CAISSON_SLIRP_TEST_FWD=1")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// The fake init's parent-death signal is tied to the thread that forks it: that thread stays locked until the
	// fake init is killed, as caisson's main thread does for the real one.
	started, release := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		started <- cmd.Start()
		<-release
	}()
	if err := <-started; err != nil {
		close(release)
		skipOrFail(t, "cannot create a user+network namespace as uid %d: %v", os.Getuid(), err)
	}
	fi.release = release
	if child != nil {
		child.Close()
	}
	fi.stdin, fi.pid = stdin, cmd.Process.Pid
	ourInits.Store(fi.pid, struct{}{})
	t.Cleanup(fi.kill)
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		if s != "ready" {
			t.Fatalf("fake init: %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fake init not ready after 10s")
	}
	return fi
}

// kill ends the fake init (SIGKILL) and reaps it; idempotent.
func (fi *fakeInit) kill() {
	if fi.cmd.ProcessState != nil {
		return
	}
	fi.stdin.Close()
	fi.cmd.Process.Kill()
	fi.cmd.Wait()
	close(fi.release)
	if fi.conn != nil {
		fi.conn.Close()
	}
}

// probe runs the test binary in role "probe" inside the sandbox's user and
// network namespace and returns its output line.
func (fi *fakeInit) probe(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--preserve-credentials", "-U", "-n", "-t", strconv.Itoa(fi.pid), os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=probe", "CAISSON_SLIRP_TEST_PROBE="+strings.Join(args, " "))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// helperComms are the command names of helper processes.
var helperComms = []string{"pasta", "passt", "passt.avx2", "pasta.avx2", "slirp4netns"}

// ourInits holds the PIDs of every fake init this test process started, so
// that leak checks only count helpers aimed at this test's sandboxes (other
// test suites may run helpers as the same user at the same time).
var ourInits sync.Map // int -> struct{}

// ours reports whether a helper's argv targets one of our fake inits (both
// helpers take the target PID as an argument of its own).
func ours(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(b), "\x00") {
		if n, err := strconv.Atoi(arg); err == nil {
			if _, ok := ourInits.Load(n); ok {
				return true
			}
		}
	}
	return false
}

// helperProcs lists live (non-zombie) helper processes of this user that
// serve this test's sandboxes.
func helperProcs() map[int]string {
	procs := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || int(st.Uid) != os.Getuid() {
			continue
		}
		if comm, state := procStat(pid); state != "" && state != "Z" && slices.Contains(helperComms, comm) && ours(pid) {
			procs[pid] = comm
		}
	}
	return procs
}

// procStat returns a process's comm and state ("" if it does not exist).
func procStat(pid int) (comm, state string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", ""
	}
	s := string(b)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i || j+3 > len(s) {
		return "", ""
	}
	return s[i+1 : j], s[j+2 : j+3]
}

// gone waits up to d for pid to be dead (absent or a zombie).
func gone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, st := procStat(pid); st == "" || st == "Z" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leakCheck fails the test if helper processes that were not there at the
// start are still alive 3 s after the test's other cleanups.
func leakCheck(t *testing.T) {
	before := helperProcs()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for {
			var leaked []string
			for pid, comm := range helperProcs() {
				if _, ok := before[pid]; !ok {
					leaked = append(leaked, fmt.Sprintf("%s[%d]", comm, pid))
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("helper processes left behind: %v", leaked)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// startNet starts a network and registers Close as cleanup.
func startNet(t *testing.T, o Options) *Network {
	t.Helper()
	if o.Stderr == nil {
		o.Stderr = testWriter{t}
	}
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("Start(%s): %v", o.Mode, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("helper output: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestGuestInterface(t *testing.T) {
	for _, mode := range helperModes {
		t.Run(string(mode), func(t *testing.T) {
			requireMode(t, mode)
			leakCheck(t)
			for _, mtu := range []int{0, 1500} {
				fi := startInit(t, "A", false)
				n := startNet(t, Options{Mode: mode, PID: fi.pid, MTU: mtu})
				g := n.Guest()
				want := GuestConfig{IfName: "tap0", IP: "10.0.2.100", PrefixLen: 24, Gateway: "10.0.2.2", DNS: "10.0.2.3", MTU: mtu}
				if mtu == 0 {
					want.MTU = DefaultMTU
				}
				if !reflect.DeepEqual(g, want) {
					t.Fatalf("Guest() = %+v; want %+v", g, want)
				}
				var pi probeInfo
				out := fi.probe(t, "info", g.IfName)
				if err := json.Unmarshal([]byte(out), &pi); err != nil {
					t.Fatalf("info probe: %q: %v", out, err)
				}
				if !pi.LoUp || !slices.Contains(pi.LoAddrs, "127.0.0.1/8") {
					t.Errorf("lo not up with 127.0.0.1/8: %+v", pi)
				}
				if pi.IfName != "tap0" || pi.MTU != want.MTU || !slices.Contains(pi.Addrs, "10.0.2.100/24") {
					t.Errorf("tap0 = %+v; want MTU %d and 10.0.2.100/24", pi, want.MTU)
				}
				if pi.DefRoute != g.Gateway {
					t.Errorf("default route via %q; want %q", pi.DefRoute, g.Gateway)
				}
				pid := n.HelperPID()
				if err := n.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if !gone(pid, 0) {
					t.Fatalf("%s (pid %d) still running right after Close", mode, pid)
				}
				if err, ok := <-n.Exited(); ok {
					t.Fatalf("Exited delivered %v after Close; want closed", err)
				}
				if err := n.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				fi.kill()
			}
		})
	}
}

// hostServices starts TCP and UDP services on the host's 127.0.0.1 that
// answer "HOST".
func hostServices(t *testing.T) (tcpPort, udpPort int) {
	return echoServers(t, "HOST", "127.0.0.1:0")
}

func TestHostLoopbackClosed(t *testing.T) {
	for _, mode := range helperModes {
		t.Run(string(mode), func(t *testing.T) {
			requireMode(t, mode)
			leakCheck(t)
			tcpPort, udpPort := hostServices(t)
			fi := startInit(t, "A", false)
			n := startNet(t, Options{Mode: mode, PID: fi.pid})
			g := n.Guest()
			if g.HostLoopback != "" {
				t.Fatalf("HostLoopback = %q; want empty", g.HostLoopback)
			}
			// As caisson's init does: without these rules pasta (--no-map-gw) would forward the probes to the
			// gateway and DNS addresses out to the host's real network.
			if out := fi.probe(t, "guard", g.DNS, g.Gateway); out != "ok" {
				t.Fatalf("guard: %q", out)
			}
			// Every address that could lead to the host's loopback: the
			// gateway, the DNS forwarder and the sandbox's own 127.0.0.1
			// (old pasta's -T auto splice).
			for _, addr := range []string{g.Gateway, g.DNS, "127.0.0.1"} {
				for _, proto := range []string{"tcp", "udp"} {
					port := tcpPort
					if proto == "udp" {
						port = udpPort
					}
					target := fmt.Sprintf("%s:%d", addr, port)
					out := fi.probe(t, proto, target)
					if strings.Contains(out, "HOST") || !strings.HasPrefix(out, "err ") {
						t.Errorf("%s %s from the sandbox: %q; want an error (host loopback must be closed)", proto, target, out)
					}
					t.Logf("%s %s: %s", proto, target, out)
				}
			}
			// Control: the sandbox's own services on 127.0.0.1 work.
			if out := fi.probe(t, "tcp", "127.0.0.1:80"); out != "ok A|probe" {
				t.Errorf("sandbox's own 127.0.0.1:80 = %q; want %q", out, "ok A|probe")
			}
		})
	}
}

func TestHostLoopbackAllowed(t *testing.T) {
	for _, mode := range helperModes {
		t.Run(string(mode), func(t *testing.T) {
			requireMode(t, mode)
			leakCheck(t)
			tcpPort, udpPort := hostServices(t)
			fi := startInit(t, "A", false)
			n := startNet(t, Options{Mode: mode, PID: fi.pid, AllowHostLoopback: true})
			g := n.Guest()
			if g.HostLoopback != "10.0.2.2" {
				t.Fatalf("HostLoopback = %q; want 10.0.2.2", g.HostLoopback)
			}
			if out := fi.probe(t, "tcp-nofin", fmt.Sprintf("%s:%d", g.HostLoopback, tcpPort)); out != "ok HOST|probe" {
				t.Errorf("tcp to host loopback via %s = %q; want %q", g.HostLoopback, out, "ok HOST|probe")
			}
			// With a half-close from the sandbox, bookworm's pasta
			// (0.0~git20230309) resends the host's data in a loop instead of
			// passing the FIN on: a pasta bug on its tap-side TCP path, which
			// affects all sandbox egress through pasta, not this package.
			// slirp4netns handles it.
			out := fi.probe(t, "tcp", fmt.Sprintf("%s:%d", g.HostLoopback, tcpPort))
			switch {
			case out == "ok HOST|probe":
			case mode == ModePasta:
				t.Logf("known pasta issue: half-closed TCP through pasta = %.60q...", out)
			default:
				t.Errorf("half-closed tcp to host loopback via %s = %q; want %q", g.HostLoopback, out, "ok HOST|probe")
			}
			if out := fi.probe(t, "udp", fmt.Sprintf("%s:%d", g.HostLoopback, udpPort)); out != "ok HOST probe" {
				t.Errorf("udp to host loopback via %s = %q; want %q", g.HostLoopback, out, "ok HOST probe")
			}
			// The sandbox's own 127.0.0.1 stays its own.
			for _, proto := range []string{"tcp", "udp"} {
				port := tcpPort
				if proto == "udp" {
					port = udpPort
				}
				if out := fi.probe(t, proto, fmt.Sprintf("127.0.0.1:%d", port)); strings.Contains(out, "HOST") {
					t.Errorf("%s 127.0.0.1:%d reached the host: %q", proto, port, out)
				}
			}
		})
	}
}

func TestPublish(t *testing.T) {
	for _, mode := range append([]Mode{ModeNone}, helperModes...) {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ModeNone {
				requireRootless(t)
			} else {
				requireMode(t, mode)
			}
			leakCheck(t)
			// Two sandboxes, both serving :80, published on different host ports.
			type box struct {
				id       string
				tcp, udp uint16
			}
			boxes := []box{{id: "A"}, {id: "B"}}
			for i := range boxes {
				b := &boxes[i]
				b.tcp, b.udp = freePort(t, "tcp"), freePort(t, "udp")
				fi := startInit(t, b.id, true)
				startNet(t, Options{Mode: mode, PID: fi.pid, ChildConn: fi.conn, Publish: []PortSpec{
					{"127.0.0.1", b.tcp, 80, "tcp"},
					{"127.0.0.1", b.udp, 80, "udp"},
				}})
				fi.conn = nil // owned by the network now
			}
			for _, b := range boxes {
				if got, err := tcpExchange(fmt.Sprintf("127.0.0.1:%d", b.tcp), "hi", 5*time.Second); err != nil || got != b.id+"\nhi" {
					t.Errorf("tcp 127.0.0.1:%d = %q, %v; want %q", b.tcp, got, err, b.id+"\nhi")
				}
				if got, err := udpExchange(fmt.Sprintf("127.0.0.1:%d", b.udp), "hi", 5*time.Second); err != nil || got != b.id+" hi" {
					t.Errorf("udp 127.0.0.1:%d = %q, %v; want %q", b.udp, got, err, b.id+" hi")
				}
			}
		})
	}
}

func TestPublishIPv6(t *testing.T) {
	requireMode(t, ModeSlirp4netns)
	leakCheck(t)
	if c, err := listenTCP("[::1]:0"); err != nil {
		skipOrFail(t, "no IPv6 loopback on the host: %v", err)
	} else {
		c.Close()
	}
	hp := freePort(t, "tcp")
	fi := startInit(t, "V6", true)
	startNet(t, Options{Mode: ModeSlirp4netns, PID: fi.pid, ChildConn: fi.conn, Publish: []PortSpec{{"::1", hp, 80, "tcp"}}})
	fi.conn = nil
	if got, err := tcpExchange(fmt.Sprintf("[::1]:%d", hp), "hi", 5*time.Second); err != nil || got != "V6\nhi" {
		t.Errorf("tcp [::1]:%d = %q, %v; want %q", hp, got, err, "V6\nhi")
	}
}

func TestHelperExitsWithInit(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode) {
		fi := startInit(t, "A", false)
		n := startNet(t, Options{Mode: mode, PID: fi.pid})
		pid := n.HelperPID()
		start := time.Now()
		fi.kill()
		if !gone(pid, 3*time.Second) {
			t.Fatalf("%s (pid %d) still running 3s after the sandbox init was killed", mode, pid)
		}
		t.Logf("%s gone %v after init was killed", mode, time.Since(start).Round(time.Millisecond))
		select {
		case err, ok := <-n.Exited():
			if ok {
				t.Fatalf("Exited delivered %v after init exit; want closed", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Exited not closed after init exit")
		}
	})
}

// TestPrepareTap: init's persistent tap0 (see roleTap), in a user and network namespace of its own.
func TestPrepareTap(t *testing.T) {
	requireRootless(t)
	if fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0); err != nil {
		skipOrFail(t, "/dev/net/tun is not usable: %v", err)
	} else {
		syscall.Close(fd)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=tap")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		skipOrFail(t, "cannot create a user+network namespace as uid %d: %v", os.Getuid(), err)
	}
	if strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestReleaseWait: after Release the helper is killed at once, and once Wait has returned it has been reaped (it is
// no longer a process at all, not even a zombie), so that caisson can exit leaving nothing behind (issue 18).
func TestReleaseWait(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode) {
		fi := startInit(t, "A", false)
		n := startNet(t, Options{Mode: mode, PID: fi.pid})
		pid := n.HelperPID()
		start := time.Now()
		n.Release()
		if err := n.Wait(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Fatalf("%s (pid %d) still exists after Release and Wait", mode, pid)
		}
		t.Logf("%s reaped %v after Release", mode, time.Since(start).Round(time.Microsecond))
		if err := n.Wait(time.Millisecond); err != nil {
			t.Errorf("a second Wait: %v", err)
		}
	})
	var none *Network
	if err := none.Wait(time.Millisecond); err != nil {
		t.Errorf("Wait on no network: %v", err)
	}
}

func TestHelperKilled(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode) {
		fi := startInit(t, "A", false)
		n := startNet(t, Options{Mode: mode, PID: fi.pid})
		start := time.Now()
		syscall.Kill(n.HelperPID(), syscall.SIGKILL)
		select {
		case err := <-n.Exited():
			if err == nil || !strings.Contains(err.Error(), "signal: killed") || !strings.Contains(err.Error(), "exited while the sandbox was running") {
				t.Fatalf("Exited = %v; want an error mentioning the kill", err)
			}
			t.Logf("Exited after %v: %v", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(time.Second):
			t.Fatal("Exited did not fire within 1s of the helper's SIGKILL")
		}
		if _, ok := <-n.Exited(); ok {
			t.Fatal("Exited not closed after its error")
		}
		if err := n.Close(); err != nil {
			t.Fatalf("Close after helper death: %v", err)
		}
	})
}

func TestHelperExitsWithParent(t *testing.T) {
	for _, mode := range helperModes {
		t.Run(string(mode), func(t *testing.T) {
			requireMode(t, mode)
			leakCheck(t)
			fi := startInit(t, "A", false)
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), roleEnv+"=parent", "CAISSON_SLIRP_TEST_MODE="+string(mode),
				"CAISSON_SLIRP_TEST_PID="+strconv.Itoa(fi.pid))
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			var pid int
			if _, err := fmt.Sscanf(line, "helper %d", &pid); err != nil || pid <= 0 {
				t.Fatalf("parent said %q", line)
			}
			start := time.Now()
			cmd.Process.Signal(syscall.SIGKILL)
			if !gone(pid, 3*time.Second) {
				t.Fatalf("%s (pid %d) still running 3s after its parent was SIGKILLed", mode, pid)
			}
			t.Logf("%s gone %v after the parent's SIGKILL", mode, time.Since(start).Round(time.Millisecond))
		})
	}
}

// fakeHelper writes a script standing in for a helper: it answers --help
// and --version, and otherwise runs body.
func fakeHelper(t *testing.T, mode Mode, body string) string {
	dir := t.TempDir()
	path := filepath.Join(dir, string(mode))
	help := strings.Join(drivers[mode].required, " ") + " " + strings.Join(drivers[mode].optional, " ")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$1\" in --help) echo %q; exit 0;; --version) echo %s version 0.0; exit 0;; esac\n%s\n",
		help, mode, strings.ReplaceAll(body, "$DIR", dir))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	for range 100 {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

func TestHelperNeverReady(t *testing.T) {
	for _, mode := range helperModes {
		t.Run(string(mode), func(t *testing.T) {
			requireRootless(t)
			fi := startInit(t, "A", false)
			// The fake forks a child that also holds the readiness pipe open.
			path := fakeHelper(t, mode, "sleep 60 & echo $! > $DIR/child; echo $$ > $DIR/pid; wait")
			start := time.Now()
			_, err := Start(context.Background(), Options{Mode: mode, PID: fi.pid, HelperPath: path, ReadyTimeout: 500 * time.Millisecond})
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "not ready after 500ms") || !strings.Contains(err.Error(), path) {
				t.Fatalf("Start = %v; want a 'not ready after 500ms' error quoting the argv", err)
			}
			if took > 2*time.Second {
				t.Errorf("Start took %v; want about 500ms", took)
			}
			dir := filepath.Dir(path)
			for _, f := range []string{"pid", "child"} {
				// The helper itself is reaped before Start returns; its
				// child has been sent SIGKILL, which is delivered
				// asynchronously.
				if pid := readPid(t, filepath.Join(dir, f)); !gone(pid, time.Second) {
					t.Errorf("fake helper's %s (pid %d) still running 1s after Start failed", f, pid)
				}
			}
			t.Logf("error after %v: %v", took.Round(time.Millisecond), err)
		})
	}
}

func TestHelperFailsEarly(t *testing.T) {
	for _, mode := range helperModes {
		t.Run(string(mode), func(t *testing.T) {
			requireRootless(t)
			fi := startInit(t, "A", false)
			path := fakeHelper(t, mode, "echo 'cannot open /dev/net/tun: boom' >&2; exit 3")
			var diag strings.Builder
			_, err := Start(context.Background(), Options{Mode: mode, PID: fi.pid, HelperPath: path, Stderr: &diag})
			if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), `"cannot open /dev/net/tun: boom"`) {
				t.Fatalf("Start = %v; want exit status 3 and the quoted stderr", err)
			}
			if !strings.Contains(diag.String(), "boom") {
				t.Errorf("Options.Stderr got %q; want the helper's output", diag.String())
			}
		})
	}
}

// TestPastaLoopbackHoleDetected shows that TestHostLoopbackClosed would
// catch the old-pasta hole: with pasta's default -T auto -U auto, the
// sandbox's own 127.0.0.1:PORT reaches a host service on 127.0.0.1:PORT.
func TestPastaLoopbackHoleDetected(t *testing.T) {
	requireMode(t, ModePasta)
	leakCheck(t)
	pastaArgsHook = func(argv []string) []string {
		var out []string
		for i := 0; i < len(argv); i++ {
			if (argv[i] == "-T" || argv[i] == "-U") && i+1 < len(argv) {
				i++
				continue
			}
			out = append(out, argv[i])
		}
		return out
	}
	defer func() { pastaArgsHook = nil }()
	tcpPort, _ := hostServices(t) // must exist before pasta scans ports
	fi := startInit(t, "A", false)
	startNet(t, Options{Mode: ModePasta, PID: fi.pid})
	out := fi.probe(t, "tcp-nofin", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	if strings.Contains(out, "HOST") {
		t.Logf("without -T none -U none this pasta splices the sandbox's 127.0.0.1 to the host: %q", out)
		return
	}
	t.Logf("this pasta does not splice 127.0.0.1 to the host even with -T auto: %q", out)
}

// R3: the helper's parent-death signal is tied to the thread that forked it; other threads of caisson ending (a
// locked goroutine that returns destroys its thread, as netlink code may) must not kill the helper. (The forking
// goroutine itself stays blocked on its thread until the helper is reaped, see Start.)
func TestHelperSurvivesThreadExits(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode) {
		fi := startInit(t, "A", false)
		n := startNet(t, Options{Mode: mode, PID: fi.pid})
		pid := n.HelperPID()
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread() // returning while locked ends this OS thread
				time.Sleep(time.Millisecond)
			}()
		}
		wg.Wait()
		select {
		case err := <-n.Exited():
			t.Fatalf("the helper ended when 50 threads of its parent did: %v", err)
		case <-time.After(time.Second):
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("helper %d: %v", pid, err)
		}
		fi.kill()
	})
}

// forEachMode runs f as a subtest per helper mode, each skipped (or failed in strict mode) when this host lacks the
// helper, with the leak check armed.
func forEachMode(t *testing.T, f func(t *testing.T, mode Mode)) {
	for _, mode := range helperModes {
		t.Run(string(mode), func(t *testing.T) {
			requireMode(t, mode)
			leakCheck(t)
			f(t, mode)
		})
	}
}
