package slirp

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// PortSpec is one published port: connections to HostIP:HostPort on the host
// are forwarded to the sandbox's own loopback address on SandboxPort.
type PortSpec struct {
	// HostIP is the host address to listen on (an IP literal, IPv4 or IPv6,
	// without brackets). ParsePublish defaults it to 127.0.0.1.
	HostIP string
	// HostPort is the host port to listen on (1-65535).
	HostPort uint16
	// SandboxPort is the port inside the sandbox (1-65535).
	SandboxPort uint16
	// Proto is "tcp" or "udp".
	Proto string
}

// String formats the spec the way ParsePublish accepts it, always with the
// host address and the protocol, e.g. "127.0.0.1:8080:80/tcp" or
// "[::1]:8080:80/udp".
func (p PortSpec) String() string {
	host := p.HostIP
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%s:%d:%d/%s", host, p.HostPort, p.SandboxPort, p.Proto)
}

// hostAddr is the host listen address, "IP:PORT" or "[IP]:PORT".
func (p PortSpec) hostAddr() string {
	return net.JoinHostPort(p.HostIP, strconv.Itoa(int(p.HostPort)))
}

// v6 reports whether the host address is an IPv6 address.
func (p PortSpec) v6() bool {
	a, err := netip.ParseAddr(p.HostIP)
	return err == nil && a.Is6() && !a.Is4In6()
}

// ParsePublish parses a -p/--publish value of the form
// "[HOSTIP:]HOSTPORT:SANDBOXPORT[/tcp|/udp]". HostIP defaults to 127.0.0.1
// and must be an IP literal; IPv6 addresses go in brackets
// ("[::1]:8080:80"). The protocol defaults to tcp. Port ranges and a missing
// host port are not accepted.
func ParsePublish(s string) (PortSpec, error) {
	bad := func(format string, args ...any) (PortSpec, error) {
		return PortSpec{}, fmt.Errorf("slirp: invalid publish spec %q: %s", s, fmt.Sprintf(format, args...))
	}
	spec := PortSpec{HostIP: "127.0.0.1", Proto: "tcp"}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		switch proto := rest[i+1:]; proto {
		case "tcp", "udp":
			spec.Proto = proto
		default:
			return bad("unknown protocol %q (valid: tcp, udp)", proto)
		}
		rest = rest[:i]
	}
	var host, ports string
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return bad("missing ']' after IPv6 address")
		}
		host = rest[1:end]
		if !strings.HasPrefix(rest[end+1:], ":") {
			return bad("expected ':' after ']'")
		}
		ports = rest[end+2:]
		if host == "" {
			return bad("empty host address")
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return bad("%q in brackets is not an IPv6 address", host)
		}
	} else {
		parts := strings.Split(rest, ":")
		switch len(parts) {
		case 2:
			ports = rest
		case 3:
			host, ports = parts[0], parts[1]+":"+parts[2]
			if host == "" {
				return bad("empty host address")
			}
		case 1:
			return bad("want HOSTPORT:SANDBOXPORT")
		default:
			return bad("too many ':' (write IPv6 addresses in brackets, e.g. [::1]:8080:80)")
		}
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return bad("host address %q is not an IP address", host)
		}
		if a.Zone() != "" {
			return bad("host address %q has a zone", host)
		}
		spec.HostIP = a.String()
	}
	hp, sp, ok := strings.Cut(ports, ":")
	if !ok || strings.Contains(sp, ":") {
		return bad("want HOSTPORT:SANDBOXPORT")
	}
	var err error
	if spec.HostPort, err = parsePort(hp); err != nil {
		return bad("host port: %v", err)
	}
	if spec.SandboxPort, err = parsePort(sp); err != nil {
		return bad("sandbox port: %v", err)
	}
	return spec, nil
}

// parsePort parses a decimal port number in 1-65535.
func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if strings.ContainsAny(s, "-,") {
		return 0, fmt.Errorf("%q: port ranges are not supported", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n == 0 {
		return 0, errors.New("port 0 is not allowed")
	}
	return uint16(n), nil
}

// portEnv is what ValidatePublish reads from the host, separated for tests.
type portEnv struct {
	unprivStart int  // net.ipv4.ip_unprivileged_port_start
	canBindLow  bool // CAP_NET_BIND_SERVICE in the effective set
}

// hostPortEnv reads the unprivileged port start sysctl (default 1024 when
// unreadable) and whether this process has CAP_NET_BIND_SERVICE.
func hostPortEnv() portEnv {
	env := portEnv{unprivStart: 1024}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			env.unprivStart = n
		}
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
				if caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
					const capNetBindService = 10
					env.canBindLow = caps&(1<<capNetBindService) != 0
				}
				break
			}
		}
	}
	return env
}

// ValidatePublish checks a list of published ports before a sandbox starts:
// known protocol, IP-literal host address, non-zero ports, no two specs that
// would listen on the same host address, port and protocol (an unspecified
// address such as 0.0.0.0 or :: conflicts with every address of the same
// port and protocol), no host port below net.ipv4.ip_unprivileged_port_start
// unless the process has CAP_NET_BIND_SERVICE, and every host port free right
// now (checked by binding and closing it; the port can still be taken before
// Start listens for real).
func ValidatePublish(specs []PortSpec) error {
	if len(specs) == 0 {
		return nil // nothing to check: spare every sandbox without --publish the two /proc reads
	}
	return validatePublish(specs, hostPortEnv(), true)
}

// validatePublish is ValidatePublish with the host environment as argument.
func validatePublish(specs []PortSpec, env portEnv, checkFree bool) error {
	addrs := make([]netip.Addr, len(specs))
	for i, p := range specs {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("slirp: publish %s: %s", p, fmt.Sprintf(format, args...))
		}
		if p.Proto != "tcp" && p.Proto != "udp" {
			return bad("unknown protocol %q (valid: tcp, udp)", p.Proto)
		}
		a, err := netip.ParseAddr(p.HostIP)
		if err != nil || a.Zone() != "" {
			return bad("host address %q is not an IP address", p.HostIP)
		}
		addrs[i] = a
		if p.HostPort == 0 || p.SandboxPort == 0 {
			return bad("port 0 is not allowed")
		}
		if int(p.HostPort) < env.unprivStart && !env.canBindLow {
			return bad("host port %d is privileged (net.ipv4.ip_unprivileged_port_start=%d); use a port >= %d",
				p.HostPort, env.unprivStart, env.unprivStart)
		}
		for j := 0; j < i; j++ {
			q := specs[j]
			if q.Proto != p.Proto || q.HostPort != p.HostPort {
				continue
			}
			if addrs[j] == a || addrs[j].IsUnspecified() || a.IsUnspecified() {
				return bad("conflicts with %s", q)
			}
		}
	}
	if !checkFree {
		return nil
	}
	for _, p := range specs {
		if err := probeFree(p); err != nil {
			return fmt.Errorf("slirp: publish %s: host port is not free: %w", p, err)
		}
	}
	return nil
}

// probeFree binds the spec's host address and closes it again.
func probeFree(p PortSpec) error {
	if p.Proto == "udp" {
		c, err := net.ListenPacket("udp", p.hostAddr())
		if err != nil {
			return err
		}
		return c.Close()
	}
	l, err := listenTCP(p.hostAddr())
	if err != nil {
		return err
	}
	return l.Close()
}
