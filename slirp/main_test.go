package slirp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary is also the sandbox init, the in-sandbox probe and a
// parent process, selected by this environment variable.
const roleEnv = "CAISSON_SLIRP_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "init":
		os.Exit(roleInit())
	case "probe":
		os.Exit(roleProbe())
	case "parent":
		os.Exit(roleParent())
	case "tap":
		os.Exit(roleTap())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, os.Getenv(roleEnv))
		os.Exit(2)
	}
}

// roleInit is a minimal sandbox init: lo up, echo services on :80 (TCP and
// UDP) answering with CAISSON_SLIRP_TEST_ID, ServeChild on fd 3 when
// CAISSON_SLIRP_TEST_FWD=1, "ready" on stdout; it exits when stdin closes.
func roleInit() int {
	fail := func(format string, args ...any) int {
		fmt.Printf("error "+format+"\n", args...)
		return 1
	}
	if err := BringUpLoopback(); err != nil {
		return fail("%v", err)
	}
	if err := BringUpLoopback(); err != nil { // idempotent
		return fail("second BringUpLoopback: %v", err)
	}
	id := os.Getenv("CAISSON_SLIRP_TEST_ID")
	l, err := net.Listen("tcp", ":80")
	if err != nil {
		return fail("%v", err)
	}
	pc, err := net.ListenPacket("udp", ":80")
	if err != nil {
		return fail("%v", err)
	}
	go serveEcho(id, l, pc)
	if os.Getenv("CAISSON_SLIRP_TEST_FWD") == "1" {
		go func() {
			err := ServeChild(os.NewFile(3, "fwd"))
			fmt.Fprintf(os.Stderr, "init: ServeChild returned: %v\n", err)
		}()
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// probeInfo is what the "info" probe reports about the sandbox network.
type probeInfo struct {
	LoUp     bool
	LoAddrs  []string
	IfName   string
	MTU      int
	Addrs    []string
	DefRoute string // gateway of the default route, from /proc/net/route
}

// roleTap runs PrepareTap twice in a new network namespace (TestPrepareTap) and prints "ok" or what went wrong:
// each call must leave tap0 in place once its descriptor is closed, which only a persistent device survives.
func roleTap() int {
	has := func(name string) bool { _, err := net.InterfaceByName(name); return err == nil }
	for i := 1; i <= 2; i++ {
		if err := PrepareTap(); err != nil {
			fmt.Printf("PrepareTap %d: %v\n", i, err)
			return 1
		}
		if !has(guestIfName) {
			fmt.Printf("after PrepareTap %d: no %s\n", i, guestIfName)
			return 1
		}
	}
	fmt.Println("ok")
	return 0
}

// roleProbe runs inside the sandbox (via nsenter) and prints one line:
// "ok <answer>" or "err <error>" for tcp/udp probes, JSON for info.
func roleProbe() int {
	args := strings.Fields(os.Getenv("CAISSON_SLIRP_TEST_PROBE"))
	if len(args) == 0 {
		fmt.Println("err no probe")
		return 0
	}
	switch args[0] {
	case "tcp":
		got, err := tcpExchange(args[1], "probe", 1500*time.Millisecond)
		report(got, err)
	case "tcp-nofin":
		got, err := tcpRequest(args[1], "probe", 1500*time.Millisecond)
		report(got, err)
	case "udp":
		got, err := udpExchange(args[1], "probe", 1500*time.Millisecond)
		report(got, err)
	case "guard": // guard DNS GATEWAY [allow]: install GuardGuest's rules, as caisson's init does
		g := GuestConfig{DNS: args[1], Gateway: args[2]}
		if len(args) > 3 {
			g.HostLoopback = args[2]
		}
		if err := GuardGuest(g); err != nil {
			fmt.Println("err", err)
		} else {
			fmt.Println("ok")
		}
	case "info":
		var pi probeInfo
		if lo, err := net.InterfaceByName("lo"); err == nil {
			pi.LoUp = lo.Flags&net.FlagUp != 0
			addrs, _ := lo.Addrs()
			for _, a := range addrs {
				pi.LoAddrs = append(pi.LoAddrs, a.String())
			}
		}
		if tap, err := net.InterfaceByName(args[1]); err == nil {
			pi.IfName, pi.MTU = tap.Name, tap.MTU
			addrs, _ := tap.Addrs()
			for _, a := range addrs {
				pi.Addrs = append(pi.Addrs, a.String())
			}
		}
		pi.DefRoute = defaultGateway()
		json.NewEncoder(os.Stdout).Encode(pi)
	default:
		fmt.Println("err unknown probe")
	}
	return 0
}

// tcpRequest connects, sends msg without half-closing and reads until the
// answer ends with msg (the echo services answer banner+echo).
func tcpRequest(addr, msg string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	var got []byte
	buf := make([]byte, 4096)
	for len(got) < 64<<10 {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if strings.HasSuffix(string(got), msg) {
			return string(got), nil
		}
		if err != nil {
			return string(got), err
		}
	}
	return string(got), fmt.Errorf("answer too long")
}

func report(got string, err error) {
	if err != nil {
		fmt.Printf("err %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	fmt.Printf("ok %s\n", strings.ReplaceAll(got, "\n", "|"))
}

// defaultGateway reads the default route's gateway from /proc/net/route.
func defaultGateway() string {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 2 && fs[1] == "00000000" {
			v, err := strconv.ParseUint(fs[2], 16, 32)
			if err != nil {
				return ""
			}
			return net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)).String()
		}
	}
	return ""
}

// roleParent starts a network against CAISSON_SLIRP_TEST_PID, prints
// "helper <pid>" and waits to be killed.
func roleParent() int {
	pid, _ := strconv.Atoi(os.Getenv("CAISSON_SLIRP_TEST_PID"))
	n, err := Start(context.Background(), Options{Mode: Mode(os.Getenv("CAISSON_SLIRP_TEST_MODE")), PID: pid, Stderr: os.Stderr})
	if err != nil {
		fmt.Printf("error %v\n", err)
		return 1
	}
	fmt.Printf("helper %d\n", n.HelperPID())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	select {
	case <-sig:
	case <-time.After(60 * time.Second):
	}
	n.Close()
	return 0
}
