package slirp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// GuardGuest installs policy-routing rules in the sandbox's network namespace (init calls it inside, once the
// helper has configured the interface) so that traffic to the driver's virtual addresses never leaves the sandbox
// unless it is meant to: the DNS address accepts only port 53 (TCP and UDP, which the driver forwards to the host's
// resolver), and the gateway is refused unless host loopback is allowed. Without these rules, pasta run with
// --no-map-gw forwards packets for the gateway and DNS addresses to the real network as ordinary destinations
// (that pasta has no way to drop them itself); slirp4netns drops them already, and the rules cost nothing there.
// Refused packets fail locally with EACCES ("prohibit"), so no packet is sent.
func GuardGuest(g GuestConfig) error {
	dns, err := netip.ParseAddr(g.DNS)
	if err != nil || !dns.Is4() {
		return fmt.Errorf("slirp: guard: bad DNS address %q", g.DNS)
	}
	gw, err := netip.ParseAddr(g.Gateway)
	if err != nil || !gw.Is4() {
		return fmt.Errorf("slirp: guard: bad gateway address %q", g.Gateway)
	}
	rules := []fibRule{
		{prio: 100, dst: dns, proto: unix.IPPROTO_UDP, dport: 53, action: unix.FR_ACT_TO_TBL},
		{prio: 101, dst: dns, proto: unix.IPPROTO_TCP, dport: 53, action: unix.FR_ACT_TO_TBL},
		{prio: 102, dst: dns, action: unix.FR_ACT_PROHIBIT},
	}
	if g.HostLoopback == "" {
		rules = append(rules, fibRule{prio: 103, dst: gw, action: unix.FR_ACT_PROHIBIT})
	}
	for _, r := range rules {
		if err := r.add(); err != nil {
			return fmt.Errorf("slirp: guard %s: %w", r.dst, err)
		}
	}
	return nil
}

// fibRule is one IPv4 policy-routing rule matching a destination host (and optionally an IP protocol and a
// destination port).
type fibRule struct {
	prio   uint32
	dst    netip.Addr
	proto  uint8
	dport  uint16
	action uint8
}

// add sends RTM_NEWRULE: struct fib_rule_hdr followed by FRA_* attributes.
func (r fibRule) add() error {
	ne := binary.NativeEndian
	hdr := make([]byte, 12) // family, dst_len, src_len, tos, table, res1, res2, action, flags(u32)
	hdr[0] = unix.AF_INET
	hdr[1] = 32
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
	dst := r.dst.As4()
	attr(unix.FRA_DST, dst[:])
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
