package slirp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// GuardGuest installs policy-routing rules in the sandbox's network namespace (init calls it inside, once the
// helper has configured the interface) so that traffic to the driver's virtual addresses never leaves the sandbox
// unless it is meant to: the DNS address accepts only port 53 (TCP and UDP, which the driver forwards to the host's
// resolver), and the gateway is refused unless host loopback is allowed. Without these rules, pasta run with
// --no-map-gw forwards packets for the gateway and DNS addresses to the real network as ordinary destinations
// (that pasta has no way to drop them itself); slirp4netns drops them already, and the rules cost nothing there.
// Refused packets fail locally with EACCES ("prohibit"), so no packet is sent. Then come g.Egress, in order
// (priorities 200 and up): an allowed prefix is looked up in the main table, a denied one is refused the same way.
func GuardGuest(g GuestConfig) error {
	dns, err := netip.ParseAddr(g.DNS)
	if err != nil || !dns.Is4() {
		return fmt.Errorf("slirp: guard: bad DNS address %q", g.DNS)
	}
	gw, err := netip.ParseAddr(g.Gateway)
	if err != nil || !gw.Is4() {
		return fmt.Errorf("slirp: guard: bad gateway address %q", g.Gateway)
	}
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }
	rules := []fibRule{
		{prio: 100, dst: host(dns), proto: unix.IPPROTO_UDP, dport: 53, action: unix.FR_ACT_TO_TBL},
		{prio: 101, dst: host(dns), proto: unix.IPPROTO_TCP, dport: 53, action: unix.FR_ACT_TO_TBL},
		{prio: 102, dst: host(dns), action: unix.FR_ACT_PROHIBIT},
	}
	if g.HostLoopback == "" {
		rules = append(rules, fibRule{prio: 103, dst: host(gw), action: unix.FR_ACT_PROHIBIT})
	}
	for i, e := range g.Egress {
		if !e.Prefix.Addr().Is4() || i >= maxEgressRules {
			return fmt.Errorf("slirp: guard: bad egress rule %v", e)
		}
		r := fibRule{prio: uint32(200 + i), dst: e.Prefix.Masked(), proto: e.Proto, dport: e.Port, action: unix.FR_ACT_PROHIBIT}
		if e.Allow {
			r.action = unix.FR_ACT_TO_TBL
		}
		rules = append(rules, r)
	}
	for _, r := range rules {
		if err := r.add(); err != nil {
			return fmt.Errorf("slirp: guard %s: %w", r.dst, err)
		}
	}
	return nil
}

// fibRule is one IPv4 policy-routing rule matching a destination prefix (and optionally an IP protocol and a
// destination port).
type fibRule struct {
	prio   uint32
	dst    netip.Prefix
	proto  uint8
	dport  uint16
	action uint8
}

// add sends RTM_NEWRULE: struct fib_rule_hdr followed by FRA_* attributes.
func (r fibRule) add() error {
	ne := binary.NativeEndian
	hdr := make([]byte, 12) // family, dst_len, src_len, tos, table, res1, res2, action, flags(u32)
	hdr[0] = unix.AF_INET
	hdr[1] = byte(r.dst.Bits())
	hdr[7] = r.action
	body := hdr
	attr := func(typ uint16, data []byte) {
		l := unix.SizeofRtAttr + len(data)
		a := make([]byte, rtaAlign(l))
		ne.PutUint16(a[0:], uint16(l))
		ne.PutUint16(a[2:], typ)
		copy(a[unix.SizeofRtAttr:], data)
		body = append(body, a...)
	}
	if r.dst.Bits() > 0 {
		dst := r.dst.Addr().As4()
		attr(unix.FRA_DST, dst[:])
	}
	prio := make([]byte, 4)
	ne.PutUint32(prio, r.prio)
	attr(unix.FRA_PRIORITY, prio)
	if r.action == unix.FR_ACT_TO_TBL {
		hdr[4] = unix.RT_TABLE_MAIN
		table := make([]byte, 4)
		ne.PutUint32(table, unix.RT_TABLE_MAIN)
		attr(unix.FRA_TABLE, table)
	}
	if r.proto != 0 {
		attr(unix.FRA_IP_PROTO, []byte{r.proto})
	}
	if r.dport != 0 {
		pr := make([]byte, 4) // struct fib_rule_port_range { __u16 start, end; }
		ne.PutUint16(pr[0:], r.dport)
		ne.PutUint16(pr[2:], r.dport)
		attr(unix.FRA_DPORT_RANGE, pr)
	}
	return netlinkRequest(unix.RTM_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
}

// EgressInForce reads the egress rules installed by GuardGuest (priorities 200 and up) back from the calling
// process's network namespace, in priority order: what is really in force, whatever the sandbox did to them.
func EgressInForce() ([]EgressRule, error) {
	hdr := make([]byte, 12) // struct fib_rule_hdr
	hdr[0] = unix.AF_INET
	type prioRule struct {
		prio uint32
		rule EgressRule
	}
	var found []prioRule
	ne := binary.NativeEndian
	err := netlinkDump(unix.RTM_GETRULE, hdr, func(m syscall.NetlinkMessage) {
		if m.Header.Type != unix.RTM_NEWRULE || len(m.Data) < 12 {
			return
		}
		bits, action := int(m.Data[1]), m.Data[7]
		var prio uint32
		var proto uint8
		var port uint16
		dst := netip.IPv4Unspecified()
		// The FRA_* attributes follow struct fib_rule_hdr (syscall.ParseNetlinkRouteAttr does not know rules).
		for b := m.Data[12:]; len(b) >= unix.SizeofRtAttr; {
			l := int(ne.Uint16(b[0:]))
			if l < unix.SizeofRtAttr || l > len(b) {
				break
			}
			typ, val := ne.Uint16(b[2:]), b[unix.SizeofRtAttr:l]
			switch typ {
			case unix.FRA_PRIORITY:
				if len(val) == 4 {
					prio = ne.Uint32(val)
				}
			case unix.FRA_DST:
				if addr, ok := netip.AddrFromSlice(val); ok {
					dst = addr
				}
			case unix.FRA_IP_PROTO:
				if len(val) == 1 {
					proto = val[0]
				}
			case unix.FRA_DPORT_RANGE:
				if len(val) == 4 && ne.Uint16(val[0:]) == ne.Uint16(val[2:]) {
					port = ne.Uint16(val[0:])
				}
			}
			if a := rtaAlign(l); a < len(b) {
				b = b[a:]
			} else {
				break
			}
		}
		if prio < 200 || prio >= 200+maxEgressRules || (action != unix.FR_ACT_TO_TBL && action != unix.FR_ACT_PROHIBIT) {
			return
		}
		p, err := dst.Prefix(bits)
		if err != nil {
			return
		}
		found = append(found, prioRule{prio, EgressRule{Prefix: p, Proto: proto, Port: port, Allow: action == unix.FR_ACT_TO_TBL}})
	})
	if err != nil {
		return nil, fmt.Errorf("slirp: read egress rules: %w", err)
	}
	slices.SortFunc(found, func(a, b prioRule) int { return int(a.prio) - int(b.prio) })
	out := make([]EgressRule, len(found))
	for i, f := range found {
		out[i] = f.rule
	}
	return out, nil
}

// netlinkDump sends one rtnetlink dump request (header added here) and calls fn for every message of the answer
// (2 s receive timeout, at most 64 reads).
func netlinkDump(typ uint16, body []byte, fn func(syscall.NetlinkMessage)) error {
	ended := false
	err := netlinkExchange(typ, unix.NLM_F_DUMP, body, 64, func(m syscall.NetlinkMessage) (bool, error) {
		switch m.Header.Type {
		case unix.NLMSG_DONE:
			ended = true
			return true, nil
		case unix.NLMSG_ERROR:
			ended = true
			return true, netlinkErrno(m)
		}
		fn(m)
		return false, nil
	})
	if err == nil && !ended {
		err = errors.New("netlink: dump did not end")
	}
	return err
}
