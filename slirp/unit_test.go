package slirp

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/cpu"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Mode
		wantErr string
	}{
		{name: "none", in: "none", want: ModeNone},
		{name: "host", in: "host", want: ModeHost},
		{name: "pasta", in: "pasta", want: ModePasta},
		{name: "slirp4netns", in: "slirp4netns", want: ModeSlirp4netns},
		{name: "empty", in: "", wantErr: `slirp: unknown network mode "" (valid: none, host, pasta, slirp4netns)`},
		{name: "upper case", in: "Pasta", wantErr: `"Pasta" (valid: none, host, pasta, slirp4netns)`},
		{name: "unknown", in: "bridge", wantErr: `unknown network mode "bridge"`},
		{name: "space", in: " pasta", wantErr: `" pasta"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseMode(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseMode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParsePublish(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    PortSpec
		wantErr string
	}{
		{name: "ports only", in: "8080:80", want: PortSpec{"127.0.0.1", 8080, 80, "tcp"}},
		{name: "tcp", in: "8080:80/tcp", want: PortSpec{"127.0.0.1", 8080, 80, "tcp"}},
		{name: "udp", in: "5353:53/udp", want: PortSpec{"127.0.0.1", 5353, 53, "udp"}},
		{name: "ipv4 host", in: "127.0.0.2:8080:80", want: PortSpec{"127.0.0.2", 8080, 80, "tcp"}},
		{name: "all interfaces", in: "0.0.0.0:8080:80/udp", want: PortSpec{"0.0.0.0", 8080, 80, "udp"}},
		{name: "ipv6 loopback", in: "[::1]:8080:80", want: PortSpec{"::1", 8080, 80, "tcp"}},
		{name: "ipv6 normalised", in: "[0:0::1]:8080:80/udp", want: PortSpec{"::1", 8080, 80, "udp"}},
		{name: "max ports", in: "65535:65535", want: PortSpec{"127.0.0.1", 65535, 65535, "tcp"}},
		{name: "leading zero", in: "08080:080", want: PortSpec{"127.0.0.1", 8080, 80, "tcp"}},
		{name: "empty", in: "", wantErr: "want HOSTPORT:SANDBOXPORT"},
		{name: "single port", in: "80", wantErr: "want HOSTPORT:SANDBOXPORT"},
		{name: "host port zero", in: "0:80", wantErr: "host port: port 0 is not allowed"},
		{name: "sandbox port zero", in: "8080:0", wantErr: "sandbox port: port 0 is not allowed"},
		{name: "port too big", in: "70000:80", wantErr: `host port: "70000" is not a port number`},
		{name: "negative", in: "-1:80", wantErr: "host port"},
		{name: "plus sign", in: "+80:80", wantErr: "is not a port number"},
		{name: "range", in: "8000-8010:80", wantErr: "port ranges are not supported"},
		{name: "letters", in: "http:80", wantErr: `"http" is not a port number`},
		{name: "empty host port", in: ":80", wantErr: "host port: empty"},
		{name: "empty sandbox port", in: "8080:", wantErr: "sandbox port: empty"},
		{name: "sctp", in: "8080:80/sctp", wantErr: `unknown protocol "sctp" (valid: tcp, udp)`},
		{name: "upper proto", in: "8080:80/TCP", wantErr: `unknown protocol "TCP"`},
		{name: "empty proto", in: "8080:80/", wantErr: `unknown protocol ""`},
		{name: "hostname", in: "localhost:8080:80", wantErr: `host address "localhost" is not an IP address`},
		{name: "empty host", in: ":8080:80", wantErr: "empty host address"},
		{name: "bare ipv6", in: "::1:8080:80", wantErr: "write IPv6 addresses in brackets"},
		{name: "unclosed bracket", in: "[::1:8080:80", wantErr: "missing ']'"},
		{name: "ipv4 in brackets", in: "[127.0.0.1]:8080:80", wantErr: "is not an IPv6 address"},
		{name: "empty brackets", in: "[]:8080:80", wantErr: "empty host address"},
		{name: "no colon after bracket", in: "[::1]8080:80", wantErr: "expected ':' after ']'"},
		{name: "zone", in: "[fe80::1%eth0]:8080:80", wantErr: "has a zone"},
		{name: "too many ports", in: "[::1]:1:2:3", wantErr: "want HOSTPORT:SANDBOXPORT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePublish(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParsePublish(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), fmt.Sprintf("slirp: invalid publish spec %q: ", tc.in)) {
					t.Errorf("error %q does not name the spec", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParsePublish(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			// String must round-trip.
			again, err := ParsePublish(got.String())
			if err != nil || again != got {
				t.Fatalf("round trip of %q via %q = %+v, %v", tc.in, got.String(), again, err)
			}
		})
	}
}

func TestValidatePublish(t *testing.T) {
	spec := func(ip string, hp, sp uint16, proto string) PortSpec { return PortSpec{ip, hp, sp, proto} }
	unpriv := portEnv{unprivStart: 1024}
	tests := []struct {
		name    string
		specs   []PortSpec
		env     portEnv
		wantErr string
	}{
		{name: "empty", specs: nil, env: unpriv},
		{name: "ok", specs: []PortSpec{spec("127.0.0.1", 8080, 80, "tcp"), spec("127.0.0.1", 8080, 80, "udp")}, env: unpriv},
		{name: "same port other address", specs: []PortSpec{spec("127.0.0.1", 8080, 80, "tcp"), spec("127.0.0.2", 8080, 81, "tcp")}, env: unpriv},
		{name: "duplicate", specs: []PortSpec{spec("127.0.0.1", 8080, 80, "tcp"), spec("127.0.0.1", 8080, 81, "tcp")},
			env: unpriv, wantErr: "slirp: publish 127.0.0.1:8080:81/tcp: conflicts with 127.0.0.1:8080:80/tcp"},
		{name: "unspecified conflicts", specs: []PortSpec{spec("127.0.0.1", 8080, 80, "udp"), spec("0.0.0.0", 8080, 81, "udp")},
			env: unpriv, wantErr: "conflicts with 127.0.0.1:8080:80/udp"},
		{name: "ipv6 unspecified conflicts", specs: []PortSpec{spec("::", 8080, 80, "tcp"), spec("::1", 8080, 81, "tcp")},
			env: unpriv, wantErr: "conflicts with [::]:8080:80/tcp"},
		{name: "host port zero", specs: []PortSpec{spec("127.0.0.1", 0, 80, "tcp")}, env: unpriv, wantErr: "port 0 is not allowed"},
		{name: "sandbox port zero", specs: []PortSpec{spec("127.0.0.1", 80, 0, "tcp")}, env: portEnv{unprivStart: 0}, wantErr: "port 0 is not allowed"},
		{name: "privileged", specs: []PortSpec{spec("127.0.0.1", 80, 80, "tcp")}, env: unpriv,
			wantErr: "host port 80 is privileged (net.ipv4.ip_unprivileged_port_start=1024)"},
		{name: "privileged allowed by sysctl", specs: []PortSpec{spec("127.0.0.1", 80, 80, "tcp")}, env: portEnv{unprivStart: 80}},
		{name: "privileged allowed by capability", specs: []PortSpec{spec("127.0.0.1", 80, 80, "tcp")}, env: portEnv{unprivStart: 1024, canBindLow: true}},
		{name: "bad proto", specs: []PortSpec{spec("127.0.0.1", 8080, 80, "sctp")}, env: unpriv, wantErr: `unknown protocol "sctp"`},
		{name: "bad address", specs: []PortSpec{spec("localhost", 8080, 80, "tcp")}, env: unpriv, wantErr: `host address "localhost" is not an IP address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validatePublish(tc.specs, tc.env, false)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("validatePublish = %v; want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("validatePublish = %v; want nil", err)
			}
		})
	}
}

func TestValidatePublishPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := uint16(l.Addr().(*net.TCPAddr).Port)
	free := freePort(t, "tcp")
	if err := ValidatePublish([]PortSpec{{"127.0.0.1", free, 80, "tcp"}}); err != nil {
		t.Fatalf("free port %d: %v", free, err)
	}
	err = ValidatePublish([]PortSpec{{"127.0.0.1", busy, 80, "tcp"}})
	if err == nil || !strings.Contains(err.Error(), "host port is not free") {
		t.Fatalf("busy port %d: got %v, want 'host port is not free'", busy, err)
	}
}

func TestResolvConf(t *testing.T) {
	tests := []struct {
		name string
		g    GuestConfig
		want string
	}{
		{name: "helper", g: GuestConfig{DNS: "10.0.2.3"},
			want: "# generated by caisson\nnameserver 10.0.2.3\noptions timeout:2 attempts:2\n"},
		{name: "none", g: GuestConfig{},
			want: "# generated by caisson\n# no DNS in this network mode\n"},
		{name: "garbage is not written", g: GuestConfig{DNS: "1.2.3.4\nnameserver 8.8.8.8"},
			want: "# generated by caisson\n# no DNS in this network mode\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(ResolvConf(tc.g)); got != tc.want {
				t.Fatalf("ResolvConf = %q; want %q", got, tc.want)
			}
		})
	}
}

func TestHosts(t *testing.T) {
	const head = "# generated by caisson\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	net := GuestConfig{IP: "10.0.2.100", DNS: "10.0.2.3"}
	withLo := net
	withLo.HostLoopback = "10.0.2.2"
	tests := []struct {
		name     string
		hostname string
		g        GuestConfig
		want     string
	}{
		{name: "network", hostname: "box", g: net, want: head + "10.0.2.100\tbox\n"},
		{name: "host loopback", hostname: "box", g: withLo, want: head + "10.0.2.100\tbox\n10.0.2.2\thost.caisson.internal\n"},
		{name: "no network", hostname: "box.example", g: GuestConfig{}, want: head + "127.0.1.1\tbox.example\n"},
		{name: "no hostname", hostname: "", g: net, want: head},
		{name: "localhost", hostname: "localhost", g: net, want: head},
		{name: "injection", hostname: "box\n1.2.3.4 evil", g: net, want: head},
		{name: "bad label", hostname: "-box", g: net, want: head},
		{name: "trailing hyphen", hostname: "box-", g: net, want: head},
		{name: "empty label", hostname: "a..b", g: net, want: head},
		{name: "long label", hostname: strings.Repeat("a", 64), g: net, want: head},
		{name: "max label", hostname: strings.Repeat("a", 63), g: net, want: head + "10.0.2.100\t" + strings.Repeat("a", 63) + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(Hosts(tc.hostname, tc.g)); got != tc.want {
				t.Fatalf("Hosts = %q; want %q", got, tc.want)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	pasta, _ := exec.LookPath("pasta")
	tests := []struct {
		name    string
		o       Options
		path    string // PATH for the test, "" keeps it
		wantErr string
		is      error
	}{
		{name: "bad mode", o: Options{Mode: "bridge"}, wantErr: `unknown network mode "bridge"`},
		{name: "publish with host", o: Options{Mode: ModeHost, Publish: []PortSpec{{"127.0.0.1", 8080, 80, "tcp"}}},
			wantErr: "not supported with network mode host"},
		{name: "publish without conn", o: Options{Mode: ModeNone, Publish: []PortSpec{{"127.0.0.1", 8080, 80, "tcp"}}},
			wantErr: "need Options.ChildConn"},
		{name: "bad mtu", o: Options{Mode: ModeNone, MTU: 100}, wantErr: "mtu 100 out of range"},
		{name: "pasta missing", o: Options{Mode: ModePasta, PID: 1}, path: "empty",
			wantErr: `slirp: pasta not found (install the "passt" package)`, is: exec.ErrNotFound},
		{name: "slirp4netns missing", o: Options{Mode: ModeSlirp4netns, PID: 1}, path: "empty",
			wantErr: `slirp: slirp4netns not found (install the "slirp4netns" package)`, is: exec.ErrNotFound},
		{name: "relative helper", o: Options{Mode: ModePasta, PID: 1, HelperPath: "pasta"}, wantErr: "is not absolute"},
		{name: "own namespaces", o: Options{Mode: ModePasta, PID: os.Getpid(), HelperPath: orDefault(pasta, "/bin/true")},
			wantErr: fmt.Sprintf("process %d is in this process's user namespace", os.Getpid())},
		{name: "no such pid", o: Options{Mode: ModePasta, PID: 1 << 30, HelperPath: "/bin/true"}, wantErr: "sandbox init pid 1073741824"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path == "empty" {
				t.Setenv("PATH", t.TempDir())
			}
			n, err := Start(context.Background(), tc.o)
			if err == nil {
				n.Close()
				t.Fatalf("Start succeeded; want error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start error %q; want it to contain %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("Start error %q is not %v", err, tc.is)
			}
		})
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// handedOut is every port freePort has returned in this test binary, by protocol: the kernel may hand a port
// just closed out again, and two published host ports that collide make Start refuse the set (seen once in CI).
var (
	handedOutMu sync.Mutex
	handedOut   = map[string]bool{}
)

// freePort returns a port that was free on 127.0.0.1 a moment ago and that it has not returned before.
func freePort(t testing.TB, proto string) uint16 {
	t.Helper()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 100 {
		p := pickPort(t, proto)
		if key := fmt.Sprint(proto, p); !handedOut[key] {
			handedOut[key] = true
			return p
		}
	}
	t.Fatalf("no %s port on 127.0.0.1 that was not handed out already", proto)
	return 0
}

// pickPort returns a port the kernel gives to a socket bound to 127.0.0.1:0, closed again.
func pickPort(t testing.TB, proto string) uint16 {
	t.Helper()
	if proto == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// echoServers starts a TCP and a UDP service on addr ("127.0.0.1:0" or
// ":80"): TCP writes id+"\n" and then echoes until EOF; UDP answers
// id+" "+datagram. They stop at test cleanup.
func echoServers(t testing.TB, id, addr string) (tcpPort, udpPort int) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); pc.Close() })
	go serveEcho(id, l, pc)
	return l.Addr().(*net.TCPAddr).Port, pc.LocalAddr().(*net.UDPAddr).Port
}

func serveEcho(id string, l net.Listener, pc net.PacketConn) {
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(id+" "), buf[:n]...), from)
		}
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.WriteString(c, id+"\n")
			io.Copy(c, c)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}()
	}
}

// tcpExchange connects, sends msg, half-closes and reads everything.
func tcpExchange(addr, msg string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// udpExchange sends msg and waits for one answer.
func udpExchange(addr, msg string, timeout time.Duration) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	b := make([]byte, 65536)
	n, err := c.Read(b)
	return string(b[:n]), err
}

// TestForwarderInProcess runs the forwarder and ServeChild in this process
// (ModeNone, the "sandbox" being this network namespace's loopback): TCP
// with half-close, many parallel connections, UDP, refused ports, and
// ServeChild ending on Close.
func TestForwarderInProcess(t *testing.T) {
	tcpPort, udpPort := echoServers(t, "S", "127.0.0.1:0")
	closedPort := freePort(t, "tcp")
	parent, child, err := NewForwarderPair()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ServeChild(child) }()
	hpTCP, hpUDP, hpClosed := freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")
	n, err := Start(context.Background(), Options{
		Mode: ModeNone,
		Publish: []PortSpec{
			{"127.0.0.1", hpTCP, uint16(tcpPort), "tcp"},
			{"127.0.0.1", hpUDP, uint16(udpPort), "udp"},
			{"127.0.0.1", hpClosed, closedPort, "tcp"},
		},
		ChildConn: parent,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if g := n.Guest(); !reflect.DeepEqual(g, GuestConfig{}) {
		t.Errorf("Guest() = %+v for ModeNone; want zero", g)
	}
	hostTCP := fmt.Sprintf("127.0.0.1:%d", hpTCP)
	got, err := tcpExchange(hostTCP, "hello", 5*time.Second)
	if err != nil || got != "S\nhello" {
		t.Fatalf("tcp via forwarder = %q, %v; want %q", got, err, "S\nhello")
	}
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprint(i) + big
			got, err := tcpExchange(hostTCP, msg, 10*time.Second)
			if err != nil || got != "S\n"+msg {
				errs <- fmt.Errorf("conn %d: %d bytes, %v", i, len(got), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 3 {
		msg := fmt.Sprint("ping", i)
		got, err := udpExchange(fmt.Sprintf("127.0.0.1:%d", hpUDP), msg, 5*time.Second)
		if err != nil || got != "S "+msg {
			t.Fatalf("udp via forwarder = %q, %v; want %q", got, err, "S "+msg)
		}
	}
	// Nothing listens on closedPort: the host connection is accepted and
	// then closed without data.
	if got, err := tcpExchange(fmt.Sprintf("127.0.0.1:%d", hpClosed), "x", 5*time.Second); got != "" {
		t.Fatalf("closed sandbox port: got %q, %v; want nothing", got, err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeChild = %v; want nil after Close", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeChild did not return after Close")
	}
	if _, err := net.DialTimeout("tcp", hostTCP, time.Second); err == nil {
		t.Fatal("host port still listening after Close")
	}
	if err, ok := <-n.Exited(); ok || err != nil {
		t.Fatalf("Exited after Close = %v, %v; want closed", err, ok)
	}
}

func TestServeChildRejectsStreamSocket(t *testing.T) {
	a, b, err := socketpairStream()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := ServeChild(b); err == nil || !strings.Contains(err.Error(), "SOCK_SEQPACKET") {
		t.Fatalf("ServeChild(stream socket) = %v; want SOCK_SEQPACKET error", err)
	}
}

// servedForwarder returns a forwarder connected to a ServeChild running in this process, and ServeChild's result.
func servedForwarder(t *testing.T) (*forwarder, <-chan error) {
	t.Helper()
	parent, child, err := NewForwarderPair()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ServeChild(child) }()
	f, err := newForwarder(parent)
	parent.Close()
	if err != nil {
		t.Fatal(err)
	}
	return f, served
}

func TestServeChildMalformedRequest(t *testing.T) {
	f, served := servedForwarder(t)
	// A request for port 0 is answered with an error, and serving goes on.
	if _, err := f.dial(dialRequest{port: 0}); err == nil || !strings.Contains(err.Error(), "port 0") {
		t.Fatalf("dial port 0 = %v; want malformed request error", err)
	}
	if _, err := f.dial(dialRequest{port: freePort(t, "tcp")}); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial closed port = %v; want connection refused", err)
	}
	f.close()
	if err := <-served; err != nil {
		t.Fatalf("ServeChild = %v", err)
	}
}

func TestDetect(t *testing.T) {
	for _, mode := range Modes {
		t.Run(string(mode), func(t *testing.T) {
			f := Detect(mode)
			if f.Mode != mode {
				t.Fatalf("Mode = %q", f.Mode)
			}
			if !mode.helper() {
				if f.Err != nil || f.Path != "" {
					t.Fatalf("Detect(%s) = %+v; want nothing to check", mode, f)
				}
				return
			}
			if f.Err != nil {
				skipOrFail(t, "%s not usable: %v", mode, f.Err)
			}
			if !strings.HasPrefix(f.Path, "/") || f.Version == "" || len(f.Missing) != 0 || !f.Have["/dev/net/tun"] {
				t.Fatalf("Detect(%s) = %+v", mode, f)
			}
			for _, flag := range drivers[mode].required {
				if !f.Have[flag] {
					t.Errorf("Have[%q] = false", flag)
				}
			}
			t.Logf("%s: path %s, version %q, have %v", mode, f.Path, f.Version, f.Have)
		})
	}
	t.Run("unknown", func(t *testing.T) {
		if f := Detect("bridge"); f.Err == nil || !strings.Contains(f.Err.Error(), "unknown network mode") {
			t.Fatalf("Detect(bridge).Err = %v", f.Err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		f := Detect(ModePasta)
		if f.Err == nil || !errors.Is(f.Err, exec.ErrNotFound) || !strings.Contains(f.Err.Error(), `install the "passt" package`) {
			t.Fatalf("Detect(pasta) without PATH: %v", f.Err)
		}
	})
}

// Prepare probes slirp4netns once: a Start (cachedDetect) that comes while it runs waits for its result instead of
// probing again. A fake slirp4netns counts its runs.
func TestPrepareProbesOnce(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	script := "#!/bin/sh\necho x >> " + count + "\n/bin/sleep 0.2\n" +
		"echo 'slirp4netns version 9.9.9'\n" +
		"echo '--configure --mtu --ready-fd --exit-fd --disable-host-loopback --netns-type --enable-sandbox'\n"
	if err := os.WriteFile(filepath.Join(dir, "slirp4netns"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	done := make(chan struct{})
	go func() { Prepare(ModeSlirp4netns); close(done) }()
	time.Sleep(50 * time.Millisecond) // Prepare is probing now
	f := cachedDetect(ModeSlirp4netns, filepath.Join(dir, "slirp4netns"))
	<-done
	if f.Version != "9.9.9" || !f.Have["--enable-sandbox"] || f.Have["--enable-seccomp"] {
		t.Errorf("features: %+v", f)
	}
	b, _ := os.ReadFile(count)
	// One probe is --version, one --help: two runs in all, not four.
	if n := strings.Count(string(b), "x"); n != 2 {
		t.Errorf("the fake helper ran %d times, want 2 (one probe)", n)
	}
	Prepare(ModePasta) // nothing to probe for pasta
}

func TestPastaExecutable(t *testing.T) {
	dir := t.TempDir()
	pasta := filepath.Join(dir, "pasta")
	if err := os.WriteFile(pasta, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := pastaExecutable(pasta, true); got != pasta {
		t.Errorf("no .avx2 build: got %q, want %q", got, pasta)
	}
	if err := os.WriteFile(pasta+".avx2", []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := pastaExecutable(pasta, true); got != pasta {
		t.Errorf("non-executable .avx2 build: got %q, want %q", got, pasta)
	}
	if err := os.Chmod(pasta+".avx2", 0o755); err != nil {
		t.Fatal(err)
	}
	if got := pastaExecutable(pasta, true); got != pasta+".avx2" {
		t.Errorf("with AVX2: got %q, want %q", got, pasta+".avx2")
	}
	if got := pastaExecutable(pasta, false); got != pasta {
		t.Errorf("without AVX2: got %q, want %q", got, pasta)
	}
	if got := pastaExecutable(pasta+".avx2", true); got != pasta+".avx2" {
		t.Errorf("already the .avx2 build: got %q", got)
	}
	if !strings.Contains(filepath.Base(pastaExecutable(pasta, true)), "pasta") {
		t.Error("the name must keep \"pasta\": it selects the binary's pasta mode")
	}
}

func TestDialRequestWire(t *testing.T) {
	for _, r := range []dialRequest{{port: 80}, {udp: true, port: 53}, {v6: true, port: 8080},
		{sockets: 1}, {sockets: maxSocketBatch, v6: true}} {
		got, err := parseDialRequest(r.marshal())
		if err != nil || got != r {
			t.Errorf("round trip of %+v = %+v, %v", r, got, err)
		}
	}
	for _, n := range []int{0, maxSocketBatch + 1} {
		b := dialRequest{sockets: 1}.marshal()
		b[4], b[5] = byte(n>>8), byte(n)
		if _, err := parseDialRequest(b); err == nil {
			t.Errorf("a request for %d sockets was accepted", n)
		}
	}
}

// The forwarder's pool hands out unconnected TCP sockets of the asked family, refilled from ServeChild in batches.
func TestSocketPool(t *testing.T) {
	f, served := servedForwarder(t)
	for _, v6 := range []bool{false, true} {
		want := unix.AF_INET
		if v6 {
			want = unix.AF_INET6
		}
		for i := range 3*socketPoolBatch + 1 {
			fd, err := f.takeSocket(v6)
			if err != nil {
				t.Fatalf("socket %d (v6 %v): %v", i, v6, err)
			}
			dom, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
			typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
			_, perr := unix.Getpeername(fd)
			unix.Close(fd)
			if dom != want || typ != unix.SOCK_STREAM || perr != unix.ENOTCONN {
				t.Fatalf("socket %d: domain %d type %d peer %v; want an unconnected TCP socket of domain %d", i, dom, typ, perr, want)
			}
		}
	}
	f.close()
	if err := <-served; err != nil {
		t.Fatalf("ServeChild = %v", err)
	}
	if _, err := f.takeSocket(false); err == nil {
		t.Fatal("takeSocket after close succeeded")
	}
}

func TestPlanEgress(t *testing.T) {
	str := func(rules []EgressRule) string {
		s := make([]string, len(rules))
		for i, r := range rules {
			s[i] = r.String()
		}
		return strings.Join(s, ", ")
	}
	const meta = "deny 100.100.100.200/32 (default), deny 169.254.0.0/16 (default)"
	tests := []struct {
		name        string
		allow, deny []string
		loopback    bool
		want, err   string
	}{
		{name: "defaults", want: meta},
		{name: "host loopback", loopback: true,
			want: "deny 100.100.100.200/32 (default), allow 10.0.2.2/32 (default), deny 169.254.0.0/16 (default)"},
		{name: "deny an address", deny: []string{"192.0.2.7"}, want: "deny 192.0.2.7/32, " + meta},
		{name: "deny private", deny: []string{"private"},
			want: meta[:len("deny 100.100.100.200/32 (default)")] + ", deny 192.168.0.0/16, deny 169.254.0.0/16 (default), deny 172.16.0.0/12, deny 100.64.0.0/10, deny 10.0.0.0/8"},
		{name: "allowlist", allow: []string{"192.0.2.0/24"},
			want: "deny 100.100.100.200/32 (default), allow 192.0.2.0/24, deny 169.254.0.0/16 (default), deny 0.0.0.0/0 (default)"},
		{name: "allow all", allow: []string{"all"}, want: meta + ", allow 0.0.0.0/0"},
		{name: "metadata on request", allow: []string{"metadata,all"}, want: "allow 100.100.100.200/32, allow 169.254.0.0/16, allow 0.0.0.0/0"},
		{name: "carve-out", allow: []string{"10.1.2.3", "all"}, deny: []string{"10.0.0.0/8"},
			want: "allow 10.1.2.3/32, " + meta + ", deny 10.0.0.0/8, allow 0.0.0.0/0"},
		{name: "deny the gateway", deny: []string{"10.0.2.2"}, loopback: true, want: "deny 10.0.2.2/32, " + meta},
		{name: "duplicates merge", deny: []string{"192.0.2.7,192.0.2.7/32"}, want: "deny 192.0.2.7/32, " + meta},
		{name: "conflict", allow: []string{"10.0.0.0/8"}, deny: []string{"10.0.0.0/8"}, err: "both name 10.0.0.0/8"},
		{name: "ipv6", deny: []string{"2001:db8::/32"}, err: "IPv4 only"},
		{name: "host bits", deny: []string{"10.0.0.1/8"}, err: "did you mean 10.0.0.0/8"},
		{name: "garbage", allow: []string{"example.com"}, err: "not an IPv4 CIDR"},
		{name: "empty item", deny: []string{"10.0.0.0/8,"}, err: "empty destination"},
		{name: "a port", allow: []string{"10.1.2.3:443/tcp", "all"}, deny: []string{"private"},
			want: "allow 10.1.2.3/32:443/tcp, deny 100.100.100.200/32 (default), deny 192.168.0.0/16, deny 169.254.0.0/16 (default), deny 172.16.0.0/12, deny 100.64.0.0/10, deny 10.0.0.0/8, allow 0.0.0.0/0"},
		{name: "a port before its prefix", deny: []string{"192.0.2.7"}, allow: []string{"192.0.2.7:53,all"},
			want: "allow 192.0.2.7/32:53/tcp, allow 192.0.2.7/32:53/udp, deny 192.0.2.7/32, " + meta + ", allow 0.0.0.0/0"},
		{name: "a keyword with a port", deny: []string{"private:22/tcp"},
			want: "deny 100.100.100.200/32 (default), deny 192.168.0.0/16:22/tcp, deny 169.254.0.0/16 (default), deny 172.16.0.0/12:22/tcp, deny 100.64.0.0/10:22/tcp, deny 10.0.0.0/8:22/tcp"},
		{name: "port 0", deny: []string{"10.0.0.0/8:0"}, err: "bad port"},
		{name: "port too big", deny: []string{"10.0.0.0/8:65536"}, err: "bad port"},
		{name: "bad protocol", deny: []string{"10.0.0.0/8:80/sctp"}, err: "unknown protocol"},
		{name: "ipv6 address", deny: []string{"::1"}, err: "IPv4 only"},
		{name: "port conflict", allow: []string{"10.0.0.1:80/tcp"}, deny: []string{"10.0.0.1:80/tcp"}, err: "both name 10.0.0.1/32:80/tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PlanEgress(tt.allow, tt.deny, tt.loopback)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := str(got); s != tt.want {
				t.Errorf("rules:\n got %s\nwant %s", s, tt.want)
			}
		})
	}
	var many []string
	for i := range maxEgressRules + 1 {
		many = append(many, fmt.Sprintf("192.0.%d.%d", i/256, i%256))
	}
	if _, err := PlanEgress(nil, many, false); err == nil {
		t.Errorf("%d rules accepted", len(many)+2)
	}
}

// /proc/cpuinfo's avx2 flag agrees with the CPU's own answer (CPUID, through golang.org/x/sys/cpu, which caisson
// itself no longer links).
func TestCPUHasAVX2(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("AVX2 is an amd64 feature")
	}
	if got, want := cpuHasAVX2(), cpu.X86.HasAVX2; got != want {
		t.Errorf("cpuHasAVX2() = %v, CPUID says %v", got, want)
	}
}
