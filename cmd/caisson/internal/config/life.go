package config

import (
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/state"
	"github.com/spf13/pflag"
)

// LifeFlags are the flags that name, detach and join sandboxes.
type LifeFlags struct {
	Name                      string
	Detach                    bool
	Join                      string
	JoinNet, JoinIPC, JoinUTS string
}

// LifePlan is what the parent does with them.
type LifePlan struct {
	// Name is --name ("" lets the parent choose one).
	Name   string
	Detach bool
	// Join names the running sandbox whose namespaces (JoinNS: net, ipc, uts) the new one shares.
	Join   string
	JoinNS []string
}

func (f *LifeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Name, "name", "", "name the sandbox `NAME` (for ps, exec, stop, logs, join); default: caisson-PID")
	fs.BoolVarP(&f.Detach, "detach", "d", false, "run in the background; output goes to the sandbox's log (caisson logs NAME)")
	fs.StringVar(&f.Join, "join", "", "share the network, IPC and UTS namespaces of the running sandbox `NAME` (a pod)")
	fs.StringVar(&f.JoinNet, "join-net", "", "share only the network namespace of the running sandbox `NAME`")
	fs.StringVar(&f.JoinIPC, "join-ipc", "", "share only the IPC namespace of the running sandbox `NAME`")
	fs.StringVar(&f.JoinUTS, "join-uts", "", "share only the UTS namespace of the running sandbox `NAME`")
	for _, n := range []string{"join", "join-net", "join-ipc", "join-uts"} {
		flagmeta.Complete(fs, n, flagmeta.Sandboxes)
	}
}

// apply checks the lifecycle flags against each other and the rest (it runs before the network flags, and
// marks joined namespaces as shared so that init leaves them alone).
func (f *LifeFlags) apply(fs *pflag.FlagSet, r *Run) error {
	l := LifePlan{Name: f.Name, Detach: f.Detach}
	if f.Name != "" {
		if err := state.ValidName(f.Name); err != nil {
			return usagef("--name: %v", err)
		}
	}
	if f.Detach && fs.Changed("tty") {
		return usagef("--detach and --tty cannot be used together (use 'caisson exec -t NAME' to get a terminal in a detached sandbox)")
	}
	add := func(flag, name string, ns ...string) error {
		if name == "" {
			return nil
		}
		if l.Join != "" && l.Join != name {
			return usagef("--%s %s: all joined namespaces must come from one sandbox (already joining %s)", flag, name, l.Join)
		}
		l.Join = name
		for _, n := range ns {
			if !contains(l.JoinNS, n) {
				l.JoinNS = append(l.JoinNS, n)
			}
		}
		return nil
	}
	for _, j := range []struct {
		flag, name string
		ns         []string
	}{
		{"join", f.Join, []string{"net", "ipc", "uts"}},
		{"join-net", f.JoinNet, []string{"net"}},
		{"join-ipc", f.JoinIPC, []string{"ipc"}},
		{"join-uts", f.JoinUTS, []string{"uts"}},
	} {
		if err := add(j.flag, j.name, j.ns...); err != nil {
			return err
		}
	}
	if l.Join != "" {
		sb := &r.Sandbox
		for _, flag := range []string{"map", "share"} {
			if fs.Changed(flag) {
				return usagef("--%s cannot be used with --join: a joined sandbox lives in %s's user namespace", flag, l.Join)
			}
		}
		for _, ns := range l.JoinNS {
			switch {
			case ns == "uts" && fs.Changed("hostname"):
				return usagef("--hostname cannot be used when joining %s's UTS namespace", l.Join)
			case ns == "net" && (fs.Changed("net") || fs.Changed("publish") || fs.Changed("allow-host-loopback")):
				return usagef("--net, --publish and --allow-host-loopback cannot be used when joining %s's network namespace", l.Join)
			}
			sb.Share = append(sb.Share, ns)
			if ns == "uts" {
				sb.Hostname = ""
			}
		}
	}
	r.Life = l
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
