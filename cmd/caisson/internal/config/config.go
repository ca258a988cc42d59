// Package config turns `caisson run` flags into a validated Run, and defines the Sandbox message the parent
// sends to the sandbox's init. It is pure: nothing here starts a process or touches the host, so every rule is
// unit-tested for any user.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cgroup"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/slirp"
	"github.com/spf13/pflag"
)

// Namespace names accepted by --share, in the order `caisson ps` and `inspect` print them.
var Namespaces = []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}

// Shareable are the namespaces --share may keep from the host.
var Shareable = []string{"net", "pid", "ipc", "uts", "cgroup", "time"}

// TimeOffsets are the clock offsets of a new time namespace, in seconds.
type TimeOffsets struct {
	Monotonic int64 `json:"monotonic"`
	Boottime  int64 `json:"boottime"`
}

// WinSize is a terminal size.
type WinSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Sandbox is what init needs to build the sandbox and run the command. The parent sends it over the sync socket
// once the ID maps are written (package wire); the JSON tags name its fields in the state record and `--json`.
type Sandbox struct {
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Workdir  string   `json:"workdir"`
	Hostname string   `json:"hostname,omitempty"`
	// Share lists the host namespaces kept (see Shareable).
	Share       []string    `json:"share,omitempty"`
	TimeOffsets TimeOffsets `json:"time_offsets"`
	TTY         bool        `json:"tty,omitempty"`
	// AsPID1 makes init exec the command in its own place, so that the command is PID 1 (--as-pid-1).
	AsPID1  bool        `json:"as_pid1,omitempty"`
	WinSize WinSize     `json:"winsize"`
	Rootfs  rootfs.Spec `json:"rootfs"`
	// BecomeRoot makes init switch to uid and gid 0 inside once the maps are written: when caisson runs as host
	// root, init starts as host uid 0, which the sandbox's maps deliberately leave unmapped.
	BecomeRoot bool         `json:"become_root,omitempty"`
	UID        uint32       `json:"uid"` // uid and gid the command runs as, inside
	GID        uint32       `json:"gid"`
	Extra      ExtraOptions `json:"extra"`
	Security   Security     `json:"security"` // hardening applied to the command (sec.go)
	// Asked are the optional setup steps the user asked for (a flag or a profile): init fails when an outer
	// sandbox refuses one of them, and skips the others with a notice.
	Asked Asked `json:"asked"`
}

// Asked records which of the steps an outer sandbox (a CI job's container) can refuse the user asked for
// explicitly; the others are defaults that init may skip with one notice line each (package outer).
type Asked struct {
	// Hostname is --hostname (the default host name "caisson" may be skipped).
	Hostname bool `json:"hostname,omitempty"`
	// TimeNS is --time-offset (a time namespace without offsets may be skipped).
	TimeNS bool `json:"time_ns,omitempty"`
	// Seccomp is --seccomp or --security strict (the default posture's filter may be skipped).
	Seccomp bool `json:"seccomp,omitempty"`
}

// ExtraOptions are the network and hardening settings init applies.
type ExtraOptions struct {
	// NetMode is the network mode ("none", "host", "pasta", "slirp4netns").
	NetMode string `json:"net_mode"`
	// PortChild is true when init must serve the published-port forwarder on fd 4.
	PortChild bool `json:"port_child,omitempty"`
	// Guest is the user-mode network's configuration (empty without one): init guards its virtual addresses.
	Guest slirp.GuestConfig `json:"guest"`
	// AwaitNet is true when the network helper starts while init sets up: init waits for the parent's "net"
	// message before it starts the command.
	AwaitNet bool `json:"await_net,omitempty"`
	// PidsLimited is true under --pids: init keeps spare threads, as under an nproc limit.
	PidsLimited bool `json:"pids_limited,omitempty"`
	// NewCgroupNS is true when the parent moved init into cgroup v1 groups after cloning it: init makes a new
	// cgroup namespace, rooted at those groups, for the command (the one it was cloned with is rooted above).
	NewCgroupNS bool `json:"new_cgroup_ns,omitempty"`
	// Outer is the sandbox caisson runs in (a container, another caisson), as the parent saw it: init names it,
	// and the engine's fix, when it skips or refuses a step.
	Outer outer.Sandbox `json:"outer"`
	// OuterProc is set by init (never sent) when the sandbox got the outer /proc, read-only, because the kernel
	// refused a fresh one: the steps that write to /proc fail with the outer sandbox's fix.
	OuterProc bool `json:"-"`
}

// Shares reports whether namespace ns is kept from the host.
func (s *Sandbox) Shares(ns string) bool {
	for _, n := range s.Share {
		if n == ns {
			return true
		}
	}
	return false
}

// Run is a parsed and validated `caisson run` invocation.
type Run struct {
	Sandbox Sandbox
	// MapMode is --map: "auto", "single" or "keep-id".
	MapMode string
	// Cwd is the caller's working directory.
	Cwd string
	// Net is the network setup the parent performs.
	Net NetPlan
	// Life is the naming, detaching and joining of the sandbox.
	Life LifePlan
	// Limits are --memory, --pids and --cpus, enforced by the parent through cgroups.
	Limits cgroup.Limits
	// OwnCgroup is --cgroup: a v2 group of the sandbox's own even without limits.
	OwnCgroup bool
	// Cgroups are the caller's cgroups, read when Limits or OwnCgroup were checked (nil otherwise).
	Cgroups *cgroup.Host
}

// UsageError is a bad flag or argument: the caller prints it and exits 125.
type UsageError struct{ Msg string }

// Error implements error.
func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// ValidHostname reports whether s is a host name of RFC 1123 labels (letters, digits and inner '-', 1-63 bytes
// each, separated by '.') and at most 64 bytes, what sethostname accepts and resolvers expect.
func ValidHostname(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// RunFlags holds the raw values of `caisson run` flags, grouped by area; each group registers its own flags and
// applies them in its own file (fs.go, net.go).
type RunFlags struct {
	Map, Share, TimeOffset, Hostname string
	Env                              []string
	ClearEnv, TTY, AsPID1            bool
	FS                               FSFlags
	Net                              NetFlags
	Sec                              SecFlags
	Life                             LifeFlags
	Profile                          string
}

// The topics `caisson run --help` and its man page list the flags under, in this order.
const (
	TopicCommand = "Command and environment"
	TopicIDMaps  = "ID maps and namespaces"
	TopicFS      = "File system"
	TopicNet     = "Network"
	TopicSec     = "Security"
	TopicLimits  = "Limits"
	TopicLife    = "Life (names, detaching, joining)"
)

// NewRunFlagSet defines the flags of `caisson run` on a new FlagSet bound to f, each filed under its topic and
// with how its value completes (package flagmeta).
func NewRunFlagSet(f *RunFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetInterspersed(false) // everything after the command is the command's
	flagmeta.Group(fs, TopicCommand, func() {
		flagmeta.StringArrayVarP(fs, &f.Env, "env", "e", "set `K=V` in the command's environment (repeatable)")
		fs.BoolVar(&f.ClearEnv, "clearenv", false, "start the command with an empty environment (--env still applies; PATH gets a default, TERM one with -t)")
		fs.BoolVarP(&f.TTY, "tty", "t", false, "give the command a new pseudo-terminal (interactive shells, job control)")
		fs.BoolVar(&f.AsPID1, "as-pid-1", false, "run the command as PID 1 in place of caisson's init (echo $$ prints 1; no reaping of orphans, no exec/join, no published ports)")
		fs.StringVar(&f.Profile, "profile", "", "read run options from a TOML `FILE` (flags on the command line win)")
		flagmeta.Complete(fs, "profile", flagmeta.Files)
	})
	flagmeta.Group(fs, TopicIDMaps, func() {
		fs.StringVar(&f.Map, "map", "auto", "ID mapping `MODE`: auto (all subordinate ranges), single (only your own id) or keep-id")
		flagmeta.Values(fs, "map", modeNames(idmap.Modes)...)
		fs.StringVar(&f.Share, "share", "", "keep these host `NAMESPACES`, comma-separated: net,pid,ipc,uts,cgroup,time")
		flagmeta.Values(fs, "share", Shareable...)
		flagmeta.List(fs, "share")
		fs.StringVar(&f.TimeOffset, "time-offset", "", "clock `OFFSETS` of the new time namespace: monotonic=SECONDS,boottime=SECONDS")
		flagmeta.Values(fs, "time-offset", "monotonic=", "boottime=")
		flagmeta.List(fs, "time-offset")
		fs.StringVar(&f.Hostname, "hostname", "caisson", "host `NAME` inside the sandbox")
	})
	flagmeta.Group(fs, TopicFS, func() { f.FS.register(fs) })
	flagmeta.Group(fs, TopicNet, func() { f.Net.register(fs) })
	flagmeta.Group(fs, TopicSec, func() { f.Sec.register(fs) })
	flagmeta.Group(fs, TopicLimits, func() { f.Sec.registerLimits(fs) })
	flagmeta.Group(fs, TopicLife, func() { f.Life.register(fs) })
	OnceFlags(fs)
	return fs
}

// modeNames returns the names of a list of modes.
func modeNames[M ~string](ms []M) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m)
	}
	return out
}

// OnceFlags makes every flag of fs that takes one value an error when given twice: with the last value silently
// winning, `--security strict` put in front of a command line by a CI wrapper would be undone by a
// `--security default` after it (catalogue C3). Repeatable flags (--env, --bind, ...) and switches are not
// affected; a profile only fills in flags the command line did not set.
func OnceFlags(fs *pflag.FlagSet) {
	flagmeta.VisitOrdered(fs, func(fl *pflag.Flag) {
		if t := fl.Value.Type(); t != "bool" && t != "stringArray" {
			fl.Value = &onceValue{Value: fl.Value}
		}
	})
}

// onceValue is a pflag.Value that accepts one Set.
type onceValue struct {
	pflag.Value
	first *string
}

func (o *onceValue) Set(s string) error {
	if o.first != nil {
		return fmt.Errorf("given twice (%q, then %q): it takes one value", *o.first, s)
	}
	if err := o.Value.Set(s); err != nil {
		return err
	}
	o.first = &s
	return nil
}

// Environment is what ParseRun reads from the caller's process; tests pass their own.
type Environment struct {
	Cwd   string
	Env   []string
	IsTTY bool
	Win   WinSize
	UID   uint32
	GID   uint32
	// Outer is the sandbox caisson runs in (outer.Detect), passed on to init.
	Outer outer.Sandbox
}

// ParseRun parses `caisson run` arguments (everything after "run").
func ParseRun(args []string, env Environment) (*Run, error) {
	var f RunFlags
	fs := NewRunFlagSet(&f)
	fs.SetOutput(discard{})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("run: %v (see 'caisson run --help')", err)
	}
	command := fs.Args()
	if f.Profile != "" {
		var err error
		if command, err = ApplyProfile(fs, f.Profile, command); err != nil {
			return nil, err
		}
	}
	return Build(fs, &f, command, env)
}

// Build validates parsed flags and the command into a Run.
func Build(fs *pflag.FlagSet, f *RunFlags, command []string, env Environment) (*Run, error) {
	if len(command) == 0 {
		return nil, usagef("run: no command given (usage: caisson run [flags] [--] COMMAND [ARG...])")
	}
	if command[0] == "" {
		return nil, usagef("run: the command name is empty")
	}
	r := &Run{MapMode: f.Map, Cwd: env.Cwd}
	sb := &r.Sandbox
	sb.Args = command
	sb.Extra.Outer = env.Outer
	switch f.Map {
	case "auto", "single", "keep-id":
	default:
		return nil, usagef("--map: unknown mode %q (want auto, single or keep-id)", f.Map)
	}
	share, err := ParseShare(f.Share)
	if err != nil {
		return nil, err
	}
	sb.Share = share
	if fs.Changed("time-offset") {
		sb.Asked.TimeNS = true
		if sb.Shares("time") {
			return nil, usagef("--time-offset and --share time cannot be used together (offsets need a new time namespace)")
		}
		if sb.TimeOffsets, err = ParseTimeOffsets(f.TimeOffset); err != nil {
			return nil, err
		}
	}
	if sb.Shares("uts") {
		if fs.Changed("hostname") {
			return nil, usagef("--hostname and --share uts cannot be used together")
		}
	} else {
		if !ValidHostname(f.Hostname) {
			return nil, usagef("--hostname: invalid host name %q (letters, digits, '-' and '.', at most 64 bytes)", f.Hostname)
		}
		sb.Hostname = f.Hostname
		sb.Asked.Hostname = fs.Changed("hostname")
	}
	if err := f.Life.apply(fs, r); err != nil {
		return nil, err
	}
	if err := f.Net.apply(r); err != nil {
		return nil, err
	}

	// Environment: inherited unless --clearenv; --env wins.
	if !f.ClearEnv {
		sb.Env = append(sb.Env, env.Env...)
	}
	for _, kv := range f.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsRune(k, 0) {
			return nil, usagef("--env: %q is not K=V", kv)
		}
		sb.Env = setEnv(sb.Env, kv)
	}
	if lookupEnv(sb.Env, "PATH") == "" {
		sb.Env = setEnv(sb.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	if f.TTY {
		if !env.IsTTY {
			// Not fatal (podman and docker warn too): run without a terminal.
			fmt.Fprintln(os.Stderr, "caisson: warning: --tty given but standard input is not a terminal; running without one")
		} else {
			sb.TTY = true
			sb.WinSize = env.Win
			if lookupEnv(sb.Env, "TERM") == "" {
				sb.Env = setEnv(sb.Env, "TERM=xterm")
			}
		}
	}

	if err := f.Sec.apply(fs, r); err != nil {
		return nil, err
	}
	if err := f.FS.apply(fs, r, env); err != nil {
		return nil, err
	}
	if f.AsPID1 {
		if err := checkAsPID1(r); err != nil {
			return nil, err
		}
		sb.AsPID1 = true
	}
	if f.Hostname != "" && sb.Hostname != "" {
		sb.Rootfs.Ops = append(sb.Rootfs.Ops, rootfs.Op{Kind: rootfs.KindFile, Dst: "/etc/hostname",
			Data: []byte(sb.Hostname + "\n"), Optional: true})
	}
	return r, nil
}

// checkAsPID1 refuses what --as-pid-1 cannot provide: it needs a PID namespace of its own, and init, which it
// replaces, is what serves published ports, joins, and keep-id's change of credentials.
func checkAsPID1(r *Run) error {
	switch {
	case r.Sandbox.Shares("pid"):
		return usagef("--as-pid-1 needs a PID namespace of its own: not with --share pid")
	case len(r.Net.Publish) > 0:
		return usagef("--as-pid-1: published ports are served by caisson's init, which the command replaces; drop -p or --as-pid-1")
	case r.Life.Join != "":
		return usagef("--as-pid-1 and --join cannot be used together")
	case r.MapMode == "keep-id":
		return usagef("--as-pid-1 with --map keep-id is not supported (the command runs as root inside)")
	}
	return nil
}

// ParseShare parses the --share list.
func ParseShare(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		ok := false
		for _, v := range Shareable {
			ok = ok || v == n
		}
		if !ok {
			return nil, usagef("--share: unknown namespace %q (want some of %s)", n, strings.Join(Shareable, ","))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// ParseTimeOffsets parses "monotonic=SECONDS,boottime=SECONDS" (either may be left out; values may be negative
// and must stay within ±2^31 seconds, about 68 years).
func ParseTimeOffsets(s string) (TimeOffsets, error) {
	var t TimeOffsets
	if strings.TrimSpace(s) == "" {
		return t, usagef("--time-offset: empty value (want monotonic=SECONDS,boottime=SECONDS)")
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return t, usagef("--time-offset: %q is not CLOCK=SECONDS", part)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > 1<<31 || n < -(1<<31) {
			return t, usagef("--time-offset: %s: invalid number of seconds %q", k, v)
		}
		if seen[k] {
			return t, usagef("--time-offset: %s given twice", k)
		}
		seen[k] = true
		switch k {
		case "monotonic":
			t.Monotonic = n
		case "boottime":
			t.Boottime = n
		default:
			return t, usagef("--time-offset: unknown clock %q (want monotonic or boottime)", k)
		}
	}
	return t, nil
}

func lookupEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(env[i], "="); k == key {
			return v
		}
	}
	return ""
}

func setEnv(env []string, kv string) []string {
	key, _, _ := strings.Cut(kv, "=")
	out := env[:0:0]
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k != key {
			out = append(out, e)
		}
	}
	return append(out, kv)
}

type discard struct{}

// Write implements io.Writer by dropping everything.
func (discard) Write(p []byte) (int, error) { return len(p), nil }
