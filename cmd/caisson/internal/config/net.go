package config

import (
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/slirp"
	"github.com/spf13/pflag"
)

// NetFlags are the network flags of `caisson run`.
type NetFlags struct {
	Mode              string
	Publish           []string
	AllowHostLoopback bool
	AllowNet, DenyNet []string
}

// NetPlan is the network the parent sets up: the mode after --share net is folded in, and the raw --publish values
// (parsed and validated by the slirp package).
type NetPlan struct {
	Mode              string
	Publish           []string
	AllowHostLoopback bool
	// Egress are the destination rules of a user-mode network (the default ones included), nil otherwise.
	Egress []slirp.EgressRule
}

func (f *NetFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Mode, "net", "none", "network `MODE`: none (loopback only), host, pasta or slirp4netns")
	flagmeta.Values(fs, "net", modeNames(slirp.Modes)...)
	flagmeta.StringArrayVarP(fs, &f.Publish, "publish", "p", "publish a `PORT`: [HOSTIP:]HOSTPORT:SANDBOXPORT[/tcp|/udp] (repeatable)")
	fs.BoolVar(&f.AllowHostLoopback, "allow-host-loopback", false, "let the sandbox reach services on the host's loopback")
	flagmeta.StringArrayVarP(fs, &f.AllowNet, "allow-net", "", "reach only these `DESTINATIONS`: IPv4 CIDRs, addresses, all, private, metadata, each with an optional :PORT[/tcp|/udp] (comma-separated, repeatable)")
	flagmeta.StringArrayVarP(fs, &f.DenyNet, "deny-net", "", "refuse these `DESTINATIONS`: IPv4 CIDRs, addresses, all, private, metadata, each with an optional :PORT[/tcp|/udp] (comma-separated, repeatable)")
	for _, n := range []string{"allow-net", "deny-net"} {
		flagmeta.Values(fs, n, "all", "private", "metadata")
		flagmeta.List(fs, n)
	}
}

// apply checks the network flags against each other and --share.
func (f *NetFlags) apply(r *Run) error {
	sb := &r.Sandbox
	switch f.Mode {
	case "none", "host", "pasta", "slirp4netns":
	default:
		return usagef("--net: unknown mode %q (want none, host, pasta or slirp4netns)", f.Mode)
	}
	mode := f.Mode
	if mode == "host" && !sb.Shares("net") {
		sb.Share = append(sb.Share, "net")
	} else if sb.Shares("net") && mode != "none" && mode != "host" {
		return usagef("--net %s and --share net cannot be used together", mode)
	}
	if contains(r.Life.JoinNS, "net") {
		mode = "joined"
	} else if sb.Shares("net") {
		mode = "host"
	}
	if len(f.Publish) > 0 && (mode == "host" || mode == "joined") {
		return usagef("--publish cannot be used with --net %s (the sandbox uses another network namespace)", mode)
	}
	if f.AllowHostLoopback && (mode == "none" || mode == "host" || mode == "joined") {
		return usagef("--allow-host-loopback needs --net pasta or --net slirp4netns")
	}
	var egress []slirp.EgressRule
	if mode == "pasta" || mode == "slirp4netns" {
		var err error
		if egress, err = slirp.PlanEgress(f.AllowNet, f.DenyNet, f.AllowHostLoopback); err != nil {
			return usagef("%v", err)
		}
	} else if len(f.AllowNet) > 0 || len(f.DenyNet) > 0 {
		return usagef("--allow-net and --deny-net need --net pasta or --net slirp4netns (--net %s has no way out to filter)", mode)
	}
	r.Net = NetPlan{Mode: mode, Publish: f.Publish, AllowHostLoopback: f.AllowHostLoopback, Egress: egress}
	sb.Extra.NetMode = mode
	return nil
}
