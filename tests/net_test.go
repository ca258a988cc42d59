package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// Traffic in these tests goes only to 127.0.0.1 on the host and, from inside a sandbox, to the sandbox's own
// gateway/DNS addresses (which the drivers map to the host) and its own loopback. Every wait is bounded.

var netModes = []string{"pasta", "slirp4netns"}

func requireNet(t *testing.T, mode string) {
	t.Helper()
	requireSandbox(t)
	testenv.RequireTun(t)
	testenv.RequireCommand(t, mode)
	testenv.RequireCommand(t, "socat")
}

// hostListener accepts TCP connections on the host's 127.0.0.1 and counts them.
type hostListener struct {
	ln       net.Listener
	accepted chan struct{}
}

func listenHost(t *testing.T) *hostListener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostListener{ln: ln, accepted: make(chan struct{}, 100)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted <- struct{}{}
			io.WriteString(c, "host-secret\n")
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return h
}

func (h *hostListener) port() int { return h.ln.Addr().(*net.TCPAddr).Port }

// probeScript tries a TCP connection to each address from inside and prints OPEN or CLOSED per address.
func probeScript(port int, addrs ...string) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "if out=$(socat -T2 - TCP4:%s:%d,connect-timeout=2 </dev/null 2>/dev/null) && [ -n \"$out\" ]; then echo OPEN-%s; else echo CLOSED-%s; fi; ", a, port, a, a)
	}
	return b.String()
}

// Closed by default: no host loopback service is reachable through the gateway, the DNS address or the
// sandbox's own 127.0.0.1 (catalogue N2, N3; the old-pasta hole); --allow-host-loopback opens the gateway only.
func TestNetHostLoopbackIsolation(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode, func(t *testing.T) {
			requireNet(t, mode)
			h := listenHost(t)
			out := mustRun(t, "run", "--net", mode, "--", "sh", "-c", probeScript(h.port(), "10.0.2.2", "10.0.2.3", "127.0.0.1"))
			for _, a := range []string{"10.0.2.2", "10.0.2.3", "127.0.0.1"} {
				if !strings.Contains(out, "CLOSED-"+a) {
					t.Errorf("host loopback reachable through %s: %q", a, out)
				}
			}
			if n := len(h.accepted); n != 0 {
				t.Errorf("the host listener accepted %d connections from the sandbox", n)
			}
			out = mustRun(t, "run", "--net", mode, "--allow-host-loopback", "--", "sh", "-c",
				probeScript(h.port(), "host.caisson.internal", "127.0.0.1")+"grep host.caisson.internal /etc/hosts")
			if !strings.Contains(out, "OPEN-host.caisson.internal") || !strings.Contains(out, "CLOSED-127.0.0.1") {
				t.Errorf("--allow-host-loopback: want the host reachable as host.caisson.internal only: %q", out)
			}
		})
	}
}

// DNS goes to the driver's forwarder; /etc/hosts carries the host name.
func TestNetResolvConf(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode, func(t *testing.T) {
			requireNet(t, mode)
			out := mustRun(t, "run", "--net", mode, "--hostname", "web-1", "--", "sh", "-c", "cat /etc/resolv.conf /etc/hosts; ip -o -4 addr show; ip route")
			for _, want := range []string{"nameserver 10.0.2.3", "web-1", "default via 10.0.2.2"} {
				if !strings.Contains(out, want) {
					t.Errorf("want %q in %q", want, out)
				}
			}
		})
	}
	requireSandbox(t)
	out := mustRun(t, "run", "--hostname", "solo", "--", "cat", "/etc/hosts")
	if !strings.Contains(out, "solo") || !strings.Contains(out, "localhost") {
		t.Errorf("--net none /etc/hosts: %q", out)
	}
}

// startServer runs a sandbox in the background and waits until its published port answers.
func startServer(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin(t), args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

// dialRead connects to 127.0.0.1:port (retrying for up to 20 s while the sandbox starts: User-Mode Linux's one slow
// CPU on a loaded machine needs more than 5) and returns the first line.
func dialRead(t *testing.T, port int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil {
				return strings.TrimSpace(line)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("127.0.0.1:%d never answered: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Published TCP ports; two sandboxes both listening on :80 (the seed's Question 2). With --net none the forwarder
// works alone: reachable from the host, no way out.
func TestNetPublishTCP(t *testing.T) {
	for _, mode := range append([]string{"none"}, netModes...) {
		t.Run(mode, func(t *testing.T) {
			if mode == "none" {
				requireSandbox(t)
				testenv.RequireCommand(t, "socat")
			} else {
				requireNet(t, mode)
			}
			p1, p2 := freePort(t, "tcp"), freePort(t, "tcp")
			for i, p := range []int{p1, p2} {
				startServer(t, "run", "--net", mode, "-p", fmt.Sprintf("%d:80", p), "--", "socat",
					"TCP-LISTEN:80,fork,reuseaddr", fmt.Sprintf("SYSTEM:echo sandbox-%d", i+1))
			}
			if got := dialRead(t, p1); got != "sandbox-1" {
				t.Errorf("port %d: %q", p1, got)
			}
			if got := dialRead(t, p2); got != "sandbox-2" {
				t.Errorf("port %d: %q", p2, got)
			}
		})
	}
}

// Published UDP ports.
func TestNetPublishUDP(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode, func(t *testing.T) {
			requireNet(t, mode)
			p := freePort(t, "udp")
			startServer(t, "run", "--net", mode, "-p", fmt.Sprintf("%d:5353/udp", p), "--", "socat",
				"UDP4-RECVFROM:5353,fork", "SYSTEM:echo udp-reply")
			c, err := net.Dial("udp4", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64)
			for i := 0; i < 50; i++ { // the sandbox may still be starting: bounded retries, 100-200 ms apart
				c.Write([]byte("ping\n"))
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				n, err := c.Read(buf)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				if got := strings.TrimSpace(string(buf[:n])); got != "udp-reply" {
					t.Fatalf("got %q", got)
				}
				return
			}
			t.Fatalf("no UDP reply through 127.0.0.1:%d", p)
		})
	}
}

// Bad network input: one caisson: line, exit 125, nothing left running.
func TestNetBadInput(t *testing.T) {
	requireSandbox(t)
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().(*net.TCPAddr).Port
	before := helperCount(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown mode", []string{"--net", "bridge"}, "--net"},
		{"malformed publish", []string{"--net", "slirp4netns", "-p", "80"}, "--publish"},
		{"bad port", []string{"--net", "slirp4netns", "-p", "99999:80"}, "--publish"},
		{"bad proto", []string{"--net", "pasta", "-p", "8080:80/sctp"}, "--publish"},
		{"duplicate publish", []string{"--net", "slirp4netns", "-p", "18081:80", "-p", "18081:81"}, "--publish"},
		{"host port taken", []string{"--net", "slirp4netns", "-p", fmt.Sprintf("%d:80", taken)}, strconv.Itoa(taken)},
		{"privileged host port", []string{"--net", "pasta", "-p", "80:80"}, "80"},
		{"publish with host", []string{"--net", "host", "-p", "18082:80"}, "--publish"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := caisson(t, append(append([]string{"run"}, tc.args...), "--", "true")...)
			if r.code != 125 || !strings.HasPrefix(r.stderr, "caisson: ") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want exit 125 and one caisson: line naming %q, got %d %q", tc.want, r.code, r.stderr)
			}
		})
	}
	if after := helperCount(t); after > before { // one may still be dying from the previous test
		t.Errorf("network helpers left running: %d before, %d after", before, after)
	}
}

// helperCount counts the caller's pasta and slirp4netns processes.
func helperCount(t *testing.T) int {
	t.Helper()
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		c := strings.TrimSpace(string(b))
		if st, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); strings.Contains(string(st), ") Z ") {
			continue // dead, waiting to be reaped (by whoever inherited it when caisson exited)
		}
		if isHelperComm(c) {
			if st, err := os.Stat("/proc/" + e.Name()); err == nil && st.Sys().(*syscall.Stat_t).Uid == uint32(os.Getuid()) {
				n++
			}
		}
	}
	return n
}

// childOf returns the pid of a child of parent whose comm starts with prefix, waiting up to 5 s.
func childOf(t *testing.T, parent int, prefixes ...string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, k := range testenv.Children(parent) {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(k) + "/comm")
			for _, p := range prefixes {
				if strings.HasPrefix(strings.TrimSpace(string(comm)), p) {
					return k
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no child %v of %d appeared", prefixes, parent)
	return 0
}

// helperOf waits (at most 5 s) for caisson's network helper among the children of parent and returns its pid.
func helperOf(t *testing.T, parent int) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, k := range testenv.Children(parent) {
			if isNetworkHelper(k) {
				return k
			}
		}
	}
	t.Fatalf("no network helper among the children of %d", parent)
	return 0
}

// No helper outlives its sandbox: normal exit, SIGKILL of caisson, SIGKILL of the helper (catalogue R22-R24).
func TestNetNoLeakedHelpers(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode, func(t *testing.T) {
			requireNet(t, mode)
			before := helperCount(t)
			mustRun(t, "run", "--net", mode, "-p", fmt.Sprintf("%d:80", freePort(t, "tcp")), "--", "true")
			waitHelpers(t, before)

			// SIGKILL of caisson.
			cmd := exec.Command(bin(t), "run", "--net", mode, "--", "sleep", "30")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			helperOf(t, cmd.Process.Pid)
			cmd.Process.Kill()
			cmd.Wait()
			waitHelpers(t, before)

			// SIGKILL of the helper: caisson says so, the sandbox's network fails fast, nothing is left.
			cmd = exec.Command(bin(t), "run", "--net", mode, "--", "sh", "-c",
				"echo up; sleep 1.5; if socat -T2 - TCP4:10.0.2.2:9,connect-timeout=2 </dev/null 2>/dev/null; then echo still-up; else echo net-down; fi")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			helper := helperOf(t, cmd.Process.Pid)
			rd := bufio.NewReader(out)
			if line, err := rd.ReadString('\n'); line != "up\n" {
				t.Fatalf("sandbox did not start: %q %v %s", line, err, stderr.String())
			}
			syscall.Kill(helper, syscall.SIGKILL)
			start := time.Now()
			got, _ := io.ReadAll(rd)
			cmd.Wait()
			if !strings.Contains(stderr.String(), "caisson: network helper exited") {
				t.Errorf("caisson did not report the helper's death: %q", stderr.String())
			}
			if !strings.Contains(string(got), "net-down") || time.Since(start) > 8*time.Second {
				t.Errorf("want the network to fail fast after the helper died: %q after %v", got, time.Since(start))
			}
			waitHelpers(t, before)
		})
	}
}

func waitHelpers(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for helperCount(t) > want {
		if time.Now().After(deadline) {
			t.Fatalf("network helpers left running: %d, want %d", helperCount(t), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The helper starts while init builds the sandbox, and the command starts only once the helper is ready: with a
// helper that takes a second to start, the command still finds its interface and default route, and a `caisson
// exec` sent while the helper is starting is run once the sandbox is up (not lost, not run early).
func TestNetCommandWaitsForSlowHelper(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode, func(t *testing.T) {
			requireNet(t, mode)
			real, err := exec.LookPath(mode)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			os.Chmod(dir, 0o755)
			wrapper := "#!/bin/sh\nsleep 1\nexec " + real + " \"$@\"\n"
			if err := os.WriteFile(dir+"/"+mode, []byte(wrapper), 0o755); err != nil {
				t.Fatal(err)
			}
			name := "slow-" + mode
			cmd := exec.Command(bin(t), "run", "--name", name, "--net", mode, "--", "sh", "-c",
				"echo main-started; ip route; sleep 2")
			cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
			out, _ := cmd.StdoutPipe()
			var errb strings.Builder
			cmd.Stderr = &errb
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			// The control socket answers as soon as init has its configuration; exec waits for the command.
			deadline := time.Now().Add(5 * time.Second)
			var r result
			attempts := 0
			for {
				attempts++
				r = caisson(t, "exec", name, "--", "sh", "-c", "echo exec-ran; ip route")
				if r.code == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			execAt := time.Since(start)
			if r.code != 0 || !strings.Contains(r.stdout, "exec-ran") || !strings.Contains(r.stdout, "default via") {
				t.Errorf("exec during the helper's start: exit %d %q %q", r.code, r.stdout, r.stderr)
			}
			got := readUntil(out, "default via")
			if err := cmd.Wait(); err != nil {
				t.Fatalf("caisson: %v; %s", err, errb.String())
			}
			if !strings.Contains(got, "main-started") || !strings.Contains(got, "default via 10.0.2.2 dev tap0") {
				t.Errorf("the command started before the network was ready: %q", got)
			}
			if execAt < time.Second {
				t.Errorf("exec answered after %v, before the helper could be ready", execAt)
			}
			// Only the first tries, before the sandbox's control socket exists, may fail: the one sent while the
			// helper starts waits for it.
			if attempts > 10 {
				t.Errorf("exec was refused %d times while the helper started, want it queued", attempts-1)
			}
			t.Logf("exec answered after %v, %d attempt(s)", execAt, attempts)
		})
	}
}

// routeDecision asks the sandbox's routing for dst without sending anything (`ip route get`): "ROUTE-dst" when
// it would be routed, "REFUSED-dst" when a rule refuses it.
func routeDecision(dsts ...string) string {
	var b strings.Builder
	for _, d := range dsts {
		fmt.Fprintf(&b, "if ip route get %s >/dev/null 2>&1; then echo ROUTE-%s; else echo REFUSED-%s; fi; ", d, d, d)
	}
	return b.String()
}

// Egress rules (anchors-features §3.1): cloud metadata refused by default, --deny-net and --allow-net, the most
// specific prefix deciding, enforced by the kernel (EACCES, nothing sent), holding in the strict posture and
// reported by inspect. Traffic goes only to the sandbox's gateway (the host's loopback); other destinations are
// only asked of the routing table (`ip route get` sends nothing).
func TestNetEgress(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode, func(t *testing.T) {
			requireNet(t, mode)
			out := mustRun(t, "run", "--net", mode, "--ro-bind", bin(t)+":/tmp/caisson", "--", "sh", "-c",
				routeDecision("169.254.169.254", "100.100.100.200", "192.0.2.1")+"/tmp/caisson inspect")
			for _, want := range []string{"REFUSED-169.254.169.254", "REFUSED-100.100.100.200", "ROUTE-192.0.2.1",
				"egress:         deny 100.100.100.200/32, deny 169.254.0.0/16 (first match wins)"} {
				if !strings.Contains(out, want) {
					t.Errorf("default rules: want %q in %q", want, out)
				}
			}
			if strings.Contains(out, "warning") {
				t.Errorf("inspect warns: %q", out)
			}

			h := listenHost(t)
			out = mustRun(t, "run", "--net", mode, "--allow-host-loopback", "--deny-net", "10.0.2.2", "--", "sh", "-c",
				probeScript(h.port(), "10.0.2.2"))
			if !strings.Contains(out, "CLOSED-10.0.2.2") || len(h.accepted) != 0 {
				t.Errorf("--deny-net 10.0.2.2: the host's loopback was reached through the gateway: %q", out)
			}

			// An allowlist: only 192.0.2.0/24 (and the gateway, host loopback being allowed), the rest refused.
			out = mustRun(t, "run", "--net", mode, "--allow-host-loopback", "--allow-net", "192.0.2.0/24", "--", "sh", "-c",
				probeScript(h.port(), "10.0.2.2")+routeDecision("192.0.2.1", "198.51.100.1", "169.254.169.254"))
			for _, want := range []string{"OPEN-10.0.2.2", "ROUTE-192.0.2.1", "REFUSED-198.51.100.1", "REFUSED-169.254.169.254"} {
				if !strings.Contains(out, want) {
					t.Errorf("--allow-net 192.0.2.0/24: want %q in %q", want, out)
				}
			}

			// A port narrows a rule: the gateway refused except one TCP port (a second host listener stays out of
			// reach), and a LAN host reachable on 443/tcp only.
			h2 := listenHost(t)
			out = mustRun(t, "run", "--net", mode, "--allow-host-loopback", "--deny-net", "10.0.2.2,private",
				"--allow-net", fmt.Sprintf("10.0.2.2:%d/tcp,10.1.2.3:443/tcp,all", h.port()), "--", "sh", "-c",
				probeScript(h.port(), "10.0.2.2")+probeScript(h2.port(), "10.0.2.2")+
					routeDecision("10.1.2.3 ipproto tcp dport 443", "10.1.2.3 ipproto tcp dport 80", "10.1.2.3 ipproto udp dport 443"))
			for _, want := range []string{"OPEN-10.0.2.2\nCLOSED-10.0.2.2", "ROUTE-10.1.2.3 ipproto tcp dport 443",
				"REFUSED-10.1.2.3 ipproto tcp dport 80", "REFUSED-10.1.2.3 ipproto udp dport 443"} {
				if !strings.Contains(out, want) {
					t.Errorf("ports: want %q in %q", want, out)
				}
			}
			if len(h2.accepted) != 0 {
				t.Errorf("the second host listener was reached through a port the rules refuse")
			}

			// The most specific prefix decides: the LAN refused except one address, metadata allowed on request.
			out = mustRun(t, "run", "--net", mode, "--deny-net", "private", "--allow-net", "10.1.2.3,metadata,all", "--", "sh", "-c",
				routeDecision("10.1.2.3", "10.1.2.4", "192.168.1.1", "172.16.0.1", "100.64.0.1", "169.254.169.254", "192.0.2.1"))
			for _, want := range []string{"ROUTE-10.1.2.3", "REFUSED-10.1.2.4", "REFUSED-192.168.1.1", "REFUSED-172.16.0.1",
				"REFUSED-100.64.0.1", "ROUTE-169.254.169.254", "ROUTE-192.0.2.1"} {
				if !strings.Contains(out, want) {
					t.Errorf("--deny-net private --allow-net 10.1.2.3,metadata,all: want %q in %q", want, out)
				}
			}
		})
	}
	requireNet(t, "pasta")
	// Root inside can remove a rule in the default posture (inspect then says so); in the strict posture it cannot.
	out := mustRun(t, "run", "--net", "pasta", "--ro-bind", bin(t)+":/tmp/caisson", "--", "sh", "-c",
		"ip rule del prio 200; "+routeDecision("100.100.100.200")+"/tmp/caisson inspect")
	if !strings.Contains(out, "ROUTE-100.100.100.200") || !strings.Contains(out, "warning: the egress rules in force differ") {
		t.Errorf("default posture, rule removed: want the route back and inspect's warning: %q", out)
	}
	out = mustRun(t, "run", "--net", "pasta", "--security", "strict", "--", "sh", "-c",
		"ip rule del prio 200 && echo DELETED; "+routeDecision("100.100.100.200", "169.254.169.254"))
	if strings.Contains(out, "DELETED") || !strings.Contains(out, "REFUSED-100.100.100.200") || !strings.Contains(out, "REFUSED-169.254.169.254") {
		t.Errorf("strict posture: the rules must hold: %q", out)
	}
}
