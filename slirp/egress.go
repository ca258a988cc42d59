package slirp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// EgressRule is one destination rule of a sandbox's outbound traffic through a user-mode network: packets to
// Prefix (and, when Port is set, to that TCP or UDP port) are routed (Allow) or refused locally with EACCES before
// anything is sent.
type EgressRule struct {
	Prefix netip.Prefix `json:"prefix"`
	// Proto (unix.IPPROTO_TCP or IPPROTO_UDP) and Port narrow the rule to one destination port; 0: any.
	Proto uint8  `json:"proto,omitempty"`
	Port  uint16 `json:"port,omitempty"`
	Allow bool   `json:"allow"`
	// Default marks the rules caisson adds by itself (the cloud metadata refusal, the final refusal of an
	// allowlist), as opposed to the user's --allow-net and --deny-net.
	Default bool `json:"default,omitempty"`
}

// String renders the rule as "allow 10.0.0.0/8", "allow 10.1.2.3/32:443/tcp" or "deny 169.254.0.0/16 (default)".
func (r EgressRule) String() string {
	s := "deny "
	if r.Allow {
		s = "allow "
	}
	s += r.target()
	if r.Default {
		s += " (default)"
	}
	return s
}

// target is the rule's destination as --allow-net spells it.
func (r EgressRule) target() string {
	if r.Port == 0 {
		return r.Prefix.String()
	}
	proto := "tcp"
	if r.Proto == unix.IPPROTO_UDP {
		proto = "udp"
	}
	return fmt.Sprintf("%s:%d/%s", r.Prefix, r.Port, proto)
}

// destination is what makes two rules the same rule.
type destination struct {
	prefix netip.Prefix
	proto  uint8
	port   uint16
}

func (r EgressRule) destination() destination { return destination{r.Prefix, r.Proto, r.Port} }

// EgressTargets names the keywords --allow-net and --deny-net accept besides IPv4 CIDRs and addresses.
var EgressTargets = map[string][]string{
	// Link-local addresses, where clouds serve instance metadata and credentials (169.254.169.254 on AWS, GCP,
	// Azure, OpenStack, DigitalOcean), and Alibaba Cloud's metadata address.
	"metadata": {"169.254.0.0/16", "100.100.100.200/32"},
	// Private and shared address space (RFC 1918, RFC 6598 carrier-grade NAT): the LAN. Link-local is metadata's.
	"private": {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"},
	"all":     {"0.0.0.0/0"},
}

// maxEgressRules bounds the rules installed in the sandbox (one policy-routing rule each).
const maxEgressRules = 256

// PlanEgress turns --allow-net and --deny-net values (comma-separated IPv4 CIDRs, addresses or EgressTargets
// keywords, each optionally followed by :PORT, :PORT/tcp or :PORT/udp; a port without a protocol means both) into
// the rules GuardGuest installs, most specific prefix first, and of two rules with the same prefix the one with a
// port first: the first rule that holds a destination decides. With any --allow-net, destinations it does not name are refused (an allowlist) unless it
// names `all`: `--allow-net 10.1.2.3,all --deny-net private` refuses the LAN except 10.1.2.3, `--allow-net
// 10.0.0.0/8 --deny-net 10.9.0.0/16` allows only 10.0.0.0/8 without 10.9.0.0/16. The cloud metadata addresses
// are refused unless an --allow-net names them. The same prefix both allowed and denied is an error. With host
// loopback allowed, the gateway (the host's loopback) is allowed unless a --deny-net names it.
func PlanEgress(allow, deny []string, allowHostLoopback bool) ([]EgressRule, error) {
	var rules []EgressRule
	add := func(flag string, values []string, isAllow bool) error {
		for _, v := range values {
			for _, item := range strings.Split(v, ",") {
				item = strings.TrimSpace(item)
				targets, err := egressTargets(item)
				if err != nil {
					return fmt.Errorf("%s: %w", flag, err)
				}
				for _, t := range targets {
					t.Allow = isAllow
					rules = append(rules, t)
				}
			}
		}
		return nil
	}
	if err := add("--allow-net", allow, true); err != nil {
		return nil, err
	}
	if err := add("--deny-net", deny, false); err != nil {
		return nil, err
	}
	explicit := map[destination]bool{} // destination → allowed
	var out []EgressRule
	for _, r := range rules {
		if was, ok := explicit[r.destination()]; ok {
			if was != r.Allow {
				return nil, fmt.Errorf("--allow-net and --deny-net both name %s", r.target())
			}
			continue
		}
		explicit[r.destination()] = r.Allow
		out = append(out, r)
	}
	defaults := []EgressRule{}
	for _, s := range EgressTargets["metadata"] {
		defaults = append(defaults, EgressRule{Prefix: netip.MustParsePrefix(s), Default: true})
	}
	if allowHostLoopback {
		gw := netip.PrefixFrom(netip.MustParseAddr(guestGateway), 32)
		defaults = append(defaults, EgressRule{Prefix: gw, Allow: true, Default: true})
	}
	if len(allow) > 0 {
		defaults = append(defaults, EgressRule{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Default: true})
	}
	for _, d := range defaults {
		if _, ok := explicit[d.destination()]; !ok {
			out = append(out, d)
		}
	}
	// Most specific first, a port before none; the order of the rest does not matter (equally specific prefixes
	// are disjoint or equal, and equal destinations were merged above).
	slices.SortStableFunc(out, func(a, b EgressRule) int {
		if d := b.Prefix.Bits() - a.Prefix.Bits(); d != 0 {
			return d
		}
		return int(b.Port) - int(a.Port)
	})
	if len(out) > maxEgressRules {
		return nil, fmt.Errorf("--allow-net/--deny-net: %d rules, at most %d", len(out), maxEgressRules)
	}
	return out, nil
}

// egressTargets parses one --allow-net/--deny-net item: TARGET[:PORT[/tcp|/udp]].
func egressTargets(item string) ([]EgressRule, error) {
	if strings.Count(item, ":") > 1 {
		return nil, fmt.Errorf("%q: the sandbox's network is IPv4 only", item)
	}
	target, portSpec, hasPort := strings.Cut(item, ":")
	prefixes, err := egressPrefixes(target, item)
	if err != nil {
		return nil, err
	}
	type pp struct {
		proto uint8
		port  uint16
	}
	ports := []pp{{}}
	if hasPort {
		num, proto, hasProto := strings.Cut(portSpec, "/")
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q: bad port %q (want 1-65535)", item, num)
		}
		switch {
		case !hasProto:
			ports = []pp{{unix.IPPROTO_TCP, uint16(n)}, {unix.IPPROTO_UDP, uint16(n)}}
		case proto == "tcp":
			ports = []pp{{unix.IPPROTO_TCP, uint16(n)}}
		case proto == "udp":
			ports = []pp{{unix.IPPROTO_UDP, uint16(n)}}
		default:
			return nil, fmt.Errorf("%q: unknown protocol %q (want tcp or udp)", item, proto)
		}
	}
	var out []EgressRule
	for _, p := range prefixes {
		for _, port := range ports {
			out = append(out, EgressRule{Prefix: p, Proto: port.proto, Port: port.port})
		}
	}
	return out, nil
}

// egressPrefixes parses the destination of a --allow-net/--deny-net item.
func egressPrefixes(target, item string) ([]netip.Prefix, error) {
	if target == "" {
		return nil, fmt.Errorf("empty destination %q (want an IPv4 CIDR or address, or one of all, metadata, private, with an optional :PORT[/tcp|/udp])", item)
	}
	if names, ok := EgressTargets[target]; ok {
		out := make([]netip.Prefix, len(names))
		for i, s := range names {
			out[i] = netip.MustParsePrefix(s)
		}
		return out, nil
	}
	var p netip.Prefix
	var err error
	if strings.Contains(target, "/") {
		p, err = netip.ParsePrefix(target)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(target); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%q is not an IPv4 CIDR or address, nor one of all, metadata, private (IPv6 addresses are not taken: the sandbox's network is IPv4 only)", item)
	}
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("%q: the sandbox's network is IPv4 only", item)
	}
	if p.Masked() != p {
		return nil, fmt.Errorf("%q has host bits set (did you mean %s?)", item, p.Masked())
	}
	return []netip.Prefix{p}, nil
}
