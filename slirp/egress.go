package slirp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// EgressRule is one destination rule of a sandbox's outbound traffic through a user-mode network: packets to
// Prefix are routed (Allow) or refused locally with EACCES before anything is sent.
type EgressRule struct {
	Prefix netip.Prefix `json:"prefix"`
	Allow  bool         `json:"allow"`
	// Default marks the rules caisson adds by itself (the cloud metadata refusal, the final refusal of an
	// allowlist), as opposed to the user's --allow-net and --deny-net.
	Default bool `json:"default,omitempty"`
}

// String renders the rule as "allow 10.0.0.0/8" or "deny 169.254.0.0/16 (default)".
func (r EgressRule) String() string {
	s := "deny "
	if r.Allow {
		s = "allow "
	}
	s += r.Prefix.String()
	if r.Default {
		s += " (default)"
	}
	return s
}

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
// keywords) into the rules GuardGuest installs, most specific prefix first: the first rule whose prefix holds a
// destination decides. With any --allow-net, destinations it does not name are refused (an allowlist) unless it
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
				prefixes, err := egressPrefixes(item)
				if err != nil {
					return fmt.Errorf("%s: %w", flag, err)
				}
				for _, p := range prefixes {
					rules = append(rules, EgressRule{Prefix: p, Allow: isAllow})
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
	explicit := map[netip.Prefix]bool{} // prefix → allowed
	var out []EgressRule
	for _, r := range rules {
		if was, ok := explicit[r.Prefix]; ok {
			if was != r.Allow {
				return nil, fmt.Errorf("--allow-net and --deny-net both name %s", r.Prefix)
			}
			continue
		}
		explicit[r.Prefix] = r.Allow
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
		if _, ok := explicit[d.Prefix]; !ok {
			out = append(out, d)
		}
	}
	// Most specific first; the order of equally specific prefixes does not matter (they are disjoint or equal,
	// and equal ones were merged above).
	slices.SortStableFunc(out, func(a, b EgressRule) int { return b.Prefix.Bits() - a.Prefix.Bits() })
	if len(out) > maxEgressRules {
		return nil, fmt.Errorf("--allow-net/--deny-net: %d rules, at most %d", len(out), maxEgressRules)
	}
	return out, nil
}

// egressPrefixes parses one --allow-net/--deny-net item.
func egressPrefixes(item string) ([]netip.Prefix, error) {
	if item == "" {
		return nil, fmt.Errorf("empty destination (want an IPv4 CIDR or address, or one of all, metadata, private)")
	}
	if names, ok := EgressTargets[item]; ok {
		out := make([]netip.Prefix, len(names))
		for i, s := range names {
			out[i] = netip.MustParsePrefix(s)
		}
		return out, nil
	}
	var p netip.Prefix
	var err error
	if strings.Contains(item, "/") {
		p, err = netip.ParsePrefix(item)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(item); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%q is not an IPv4 CIDR or address, nor one of all, metadata, private", item)
	}
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("%q: the sandbox's network is IPv4 only", item)
	}
	if p.Masked() != p {
		return nil, fmt.Errorf("%q has host bits set (did you mean %s?)", item, p.Masked())
	}
	return []netip.Prefix{p}, nil
}
