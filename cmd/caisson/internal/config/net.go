package config

import "github.com/spf13/pflag"

// NetFlags are the network flags of `caisson run`.
type NetFlags struct {
	Mode              string
	Publish           []string
	AllowHostLoopback bool
}

// NetPlan is the network the parent sets up: the mode after --share net is folded in, and the raw --publish values
// (parsed and validated by the slirp package).
type NetPlan struct {
	Mode              string
	Publish           []string
	AllowHostLoopback bool
}

func (f *NetFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Mode, "net", "none", "network: none (loopback only), host, pasta or slirp4netns")
	fs.StringArrayVarP(&f.Publish, "publish", "p", nil, "publish a port [HOSTIP:]HOSTPORT:SANDBOXPORT[/tcp|/udp] (repeatable)")
	fs.BoolVar(&f.AllowHostLoopback, "allow-host-loopback", false, "let the sandbox reach services on the host's loopback")
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
	r.Net = NetPlan{Mode: mode, Publish: f.Publish, AllowHostLoopback: f.AllowHostLoopback}
	sb.Extra.NetMode = mode
	return nil
}
