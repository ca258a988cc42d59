package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cgroup"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/seccomp"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// Security postures accepted by --security.
const (
	// PostureDefault keeps root's namespaced capabilities but CAP_SYS_PTRACE (which would reach into init), so
	// mount, sethostname, `ip link` and nested unshare work inside (what a course on namespaces needs).
	PostureDefault = "default"
	// PostureStrict is for untrusted code: no capabilities at all, no nested namespaces, no new mount API, no
	// ptrace of other processes, and a user-namespace limit of 0 inside.
	PostureStrict = "strict"
)

// Landlock modes: --landlock's values, and the strict posture's own.
const (
	LandlockOff        = ""
	LandlockOn         = "on"
	LandlockBestEffort = "best-effort"
	// LandlockAuto is what --security strict applies unless --landlock is given: best-effort and silent, writes
	// allowed beneath every mount of the sandbox's view that is read-write, so that it refuses only what the
	// mounts do not govern: host files and directories reached through a descriptor or a /proc magic link.
	LandlockAuto = "auto"
)

// Security is the hardening init applies to the command, on the thread that forks it (harden.Apply).
type Security struct {
	// Posture is PostureDefault or PostureStrict.
	Posture string `json:"posture"`
	// Seccomp is the profile: "default", "strict", "unconfined", or the path of a JSON profile whose content the
	// parent read into SeccompJSON (init cannot rely on seeing the path after pivot_root).
	Seccomp     string `json:"seccomp"`
	SeccompJSON []byte `json:"seccomp_json,omitempty"`
	// CapAdd and CapDrop are canonical capability names ("CAP_NET_ADMIN") or "ALL", in flag order.
	CapAdd  []string `json:"cap_add,omitempty"`
	CapDrop []string `json:"cap_drop,omitempty"`
	// Landlock is LandlockOff, LandlockOn, LandlockBestEffort or LandlockAuto; RW are the extra writable paths
	// (inside view) of the first two.
	Landlock string   `json:"landlock,omitempty"`
	RW       []string `json:"rw,omitempty"`
	// Rlimits are applied with setrlimit before the command is forked.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
}

// Rlimit is one --rlimit value. Unlimited is RlimInfinity.
type Rlimit struct {
	Name     string `json:"name"`
	Resource int    `json:"resource"`
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
}

// RlimInfinity is RLIM_INFINITY.
const RlimInfinity = ^uint64(0)

// rlimitResources are the resources --rlimit accepts.
var rlimitResources = map[string]int{
	"nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "as": unix.RLIMIT_AS,
	"cpu": unix.RLIMIT_CPU, "fsize": unix.RLIMIT_FSIZE, "core": unix.RLIMIT_CORE,
}

// CapNames are the capability names by number (linux/capability.h, up to CAP_CHECKPOINT_RESTORE = 40).
var CapNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
	"CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
	"CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// ParseCap returns the canonical name and number of a capability given as "CAP_NET_ADMIN", "net_admin" or any
// case mix, or "ALL" (number -1).
func ParseCap(s string) (string, int, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if u == "ALL" {
		return "ALL", -1, nil
	}
	if !strings.HasPrefix(u, "CAP_") {
		u = "CAP_" + u
	}
	if i := slices.Index(CapNames, u); i >= 0 {
		return u, i, nil
	}
	return "", 0, fmt.Errorf("unknown capability %q", s)
}

// SecFlags are the hardening flags of `caisson run`.
type SecFlags struct {
	Security, Seccomp, Landlock string
	CapAdd, CapDrop             []string
	RW, Rlimits                 []string
	Memory, Pids, CPUs          string
	Cgroup                      bool
}

func (f *SecFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Security, "security", PostureDefault, "`POSTURE`: default (root keeps its namespaced capabilities but CAP_SYS_PTRACE) or strict (untrusted code: no capabilities, no nested namespaces)")
	fs.StringVar(&f.Seccomp, "seccomp", "", "seccomp `PROFILE`: default, strict, unconfined or FILE.json (default: the --security posture)")
	flagmeta.StringArrayVarP(fs, &f.CapAdd, "cap-add", "", "give the command this `CAPABILITY` (CAP_NET_ADMIN, net_admin or all; repeatable, comma-separated)")
	flagmeta.StringArrayVarP(fs, &f.CapDrop, "cap-drop", "", "take this `CAPABILITY` from the command (repeatable, comma-separated; all for none)")
	fs.StringVar(&f.Landlock, "landlock", LandlockOff, "Landlock `MODE`: restrict writes to /tmp, /dev, the work directory and --rw paths (on, or best-effort to accept a weaker kernel); off: not even --security strict's own")
	fs.Lookup("landlock").NoOptDefVal = LandlockOn
	flagmeta.StringArrayVarP(fs, &f.RW, "rw", "", "with --landlock: also allow writes beneath `PATH` (as seen inside; repeatable)")
	flagmeta.Values(fs, "security", PostureDefault, PostureStrict)
	flagmeta.Values(fs, "seccomp", "default", "strict", "unconfined")
	flagmeta.Complete(fs, "seccomp", flagmeta.Files)
	capNames := []string{"all"}
	for _, c := range CapNames {
		capNames = append(capNames, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	for _, n := range []string{"cap-add", "cap-drop"} {
		flagmeta.Values(fs, n, capNames...)
		flagmeta.List(fs, n)
	}
	flagmeta.Values(fs, "landlock", LandlockOn, LandlockBestEffort, "off")
}

// registerLimits registers the resource limits: rlimits and cgroup limits.
func (f *SecFlags) registerLimits(fs *pflag.FlagSet) {
	flagmeta.StringArrayVarP(fs, &f.Rlimits, "rlimit", "", "resource limit `NAME=SOFT[:HARD]` for nofile, nproc, as, cpu, fsize, core (numbers or unlimited; repeatable)")
	var names []string
	for n := range rlimitResources {
		names = append(names, n+"=")
	}
	slices.Sort(names)
	flagmeta.Values(fs, "rlimit", names...)
	fs.StringVar(&f.Memory, "memory", "", "memory `LIMIT` (e.g. 512m; no swap beyond it) in a cgroup of the sandbox's own under your delegated one")
	fs.StringVar(&f.Pids, "pids", "", "`LIMIT` on processes and threads, in a cgroup of the sandbox's own under your delegated one")
	fs.StringVar(&f.CPUs, "cpus", "", "CPU time limit in `CPUS` (e.g. 1.5), in a cgroup of the sandbox's own under your delegated one")
	fs.BoolVar(&f.Cgroup, "cgroup", false, "run in a cgroup v2 group of the sandbox's own under your delegated one, even without limits")
}

// CgroupHost describes the caller's cgroups, for checking --memory, --pids, --cpus and --cgroup while the flags
// are parsed; tests replace it.
var CgroupHost = cgroup.Discover

// apply validates the hardening flags into r.Sandbox.Security.
func (f *SecFlags) apply(fs *pflag.FlagSet, r *Run) error {
	sec := &r.Sandbox.Security
	switch f.Security {
	case PostureDefault, PostureStrict:
		sec.Posture = f.Security
	default:
		return usagef("--security: unknown posture %q (want default or strict)", f.Security)
	}
	sec.Seccomp = f.Security
	r.Sandbox.Asked.Seccomp = fs.Changed("seccomp") || sec.Posture == PostureStrict
	if fs.Changed("seccomp") {
		p, err := seccomp.ParseProfile(f.Seccomp)
		if err != nil {
			return usagef("--seccomp: %v", strings.TrimPrefix(err.Error(), "seccomp: "))
		}
		sec.Seccomp = string(p)
		if p.IsFile() {
			data, err := os.ReadFile(string(p))
			if err != nil {
				return usagef("--seccomp: %v", err)
			}
			if _, err := seccomp.CompileOCI(data, string(p)); err != nil {
				return usagef("--seccomp: %v", strings.TrimPrefix(err.Error(), "seccomp: "))
			}
			sec.SeccompJSON = data
		}
	}
	var err error
	if sec.CapAdd, err = parseCapList("--cap-add", f.CapAdd); err != nil {
		return err
	}
	if sec.CapDrop, err = parseCapList("--cap-drop", f.CapDrop); err != nil {
		return err
	}
	if sec.Posture == PostureStrict && slices.ContainsFunc(sec.CapAdd, func(c string) bool { return c == "ALL" || c == "CAP_SYS_RESOURCE" }) &&
		!slices.ContainsFunc(sec.CapDrop, func(c string) bool { return c == "ALL" || c == "CAP_SYS_RESOURCE" }) {
		return usagef("--cap-add: CAP_SYS_RESOURCE would let the command raise user.max_user_namespaces, which --security strict pins to 0")
	}
	switch f.Landlock {
	case LandlockOff, LandlockOn, LandlockBestEffort:
		sec.Landlock = f.Landlock
	case "off", "false":
		sec.Landlock = LandlockOff
	case "true":
		sec.Landlock = LandlockOn
	default:
		return usagef("--landlock: unknown mode %q (want on, best-effort or off)", f.Landlock)
	}
	if sec.Posture == PostureStrict && !fs.Changed("landlock") {
		sec.Landlock = LandlockAuto
	}
	for _, p := range f.RW {
		switch sec.Landlock {
		case LandlockOff:
			return usagef("--rw %s needs --landlock (without it, writability is decided by the mounts alone)", p)
		case LandlockAuto:
			return usagef("--rw %s needs --landlock: --security strict's own Landlock already allows writes beneath every read-write mount (--bind, --tmpfs)", p)
		}
		if !filepath.IsAbs(p) {
			return usagef("--rw: %q must be an absolute path (as seen inside the sandbox)", p)
		}
		sec.RW = append(sec.RW, filepath.Clean(p))
	}
	seen := map[string]bool{}
	for _, v := range f.Rlimits {
		rl, err := ParseRlimit(v)
		if err != nil {
			return usagef("--rlimit: %v", err)
		}
		if seen[rl.Name] {
			return usagef("--rlimit: %s given twice", rl.Name)
		}
		seen[rl.Name] = true
		sec.Rlimits = append(sec.Rlimits, rl)
	}
	for _, c := range []struct{ flag, val string }{{"memory", f.Memory}, {"pids", f.Pids}, {"cpus", f.CPUs}} {
		if fs.Changed(c.flag) {
			if err := checkCgroupValue(c.flag, c.val, &r.Limits); err != nil {
				return err
			}
		}
	}
	r.OwnCgroup = f.Cgroup
	if r.Limits.Any() || r.OwnCgroup {
		if r.Life.Join != "" {
			return usagef("--join: a joined sandbox lives in the cgroup of the one it joins; give --memory, --pids, --cpus and --cgroup to that one")
		}
		h, err := CgroupHost()
		if err != nil {
			return usagef("--cgroup: cannot read your cgroups: %v", err)
		}
		r.Cgroups = h
		if err := h.Check(r.Limits, r.OwnCgroup); err != nil {
			hint := " (see 'caisson doctor'; or use --rlimit)"
			if strings.Contains(err.Error(), "not delegated") {
				hint = "; hint: " + cgroup.Hint
			}
			if o := r.Sandbox.Extra.Outer; o.In() {
				hint += "; " + o.Why(outer.NeedCgroup) + "; fix: " + o.Fix(outer.NeedCgroup)
			}
			return usagef("%v%s", err, hint)
		}
	}
	return nil
}

// InitThreads is the most threads caisson's init has under a process limit (harden.ReserveThreads included, with
// the one Go processor package oneproc gives it); they count against --pids like the command's processes.
const InitThreads = 8

// MinPids is the smallest --pids accepted: init's threads and room for a few processes.
const MinPids = 16

// checkCgroupValue validates a --memory, --pids or --cpus value into l.
func checkCgroupValue(flag, v string, l *cgroup.Limits) error {
	switch flag {
	case "memory":
		n, err := parseSizeValue(v)
		if err != nil {
			return usagef("--memory: %v", err)
		}
		if n < 1<<20 {
			return usagef("--memory: %q is below the 1 MiB minimum", v)
		}
		l.Memory = n
	case "pids":
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return usagef("--pids: %q is not a positive number", v)
		}
		if n < MinPids {
			return usagef("--pids: %d leaves the command nothing: caisson's init counts too (up to %d threads); give at least %d", n, InitThreads, MinPids)
		}
		l.Pids = int64(n)
	case "cpus":
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0.01 || n > 4096 {
			return usagef("--cpus: %q is not a number of CPUs from 0.01 to 4096", v)
		}
		l.CPUs = n
	}
	return nil
}

// parseCapList parses repeatable, comma-separated capability names.
func parseCapList(flag string, vals []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			name, _, err := ParseCap(s)
			if err != nil {
				return nil, usagef("%s: %v", flag, err)
			}
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// ParseRlimit parses NAME=SOFT[:HARD]; HARD defaults to SOFT. Values are numbers (as, fsize and core count bytes
// and take an optional k, m or g suffix) or "unlimited"; SOFT must not exceed HARD.
func ParseRlimit(s string) (Rlimit, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Rlimit{}, fmt.Errorf("%q is not NAME=SOFT[:HARD]", s)
	}
	res, ok := rlimitResources[name]
	if !ok {
		return Rlimit{}, fmt.Errorf("unknown resource %q (want nofile, nproc, as, cpu, fsize or core)", name)
	}
	softS, hardS, hasHard := strings.Cut(val, ":")
	bytes := name == "as" || name == "fsize" || name == "core"
	soft, err := parseRlimitValue(softS, bytes)
	if err != nil {
		return Rlimit{}, fmt.Errorf("%s: %w", name, err)
	}
	hard := soft
	if hasHard {
		if hard, err = parseRlimitValue(hardS, bytes); err != nil {
			return Rlimit{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	if soft > hard {
		return Rlimit{}, fmt.Errorf("%s: soft limit %s is above the hard limit %s", name, softS, hardS)
	}
	return Rlimit{Name: name, Resource: res, Soft: soft, Hard: hard}, nil
}

func parseRlimitValue(v string, bytes bool) (uint64, error) {
	if v == "unlimited" || v == "infinity" {
		return RlimInfinity, nil
	}
	if bytes {
		n, err := parseSizeValue(v)
		return uint64(n), err
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == RlimInfinity {
		return 0, fmt.Errorf("invalid value %q (want a number or unlimited)", v)
	}
	return n, nil
}

// parseSizeValue parses a byte count with an optional k, m or g suffix; 0 is allowed (e.g. core=0).
func parseSizeValue(v string) (int64, error) {
	if v == "0" {
		return 0, nil
	}
	return rootfs.ParseSize(v)
}
