package harden

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cgroup"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/state"
	"github.com/caisson-sandbox/caisson/slirp"
	"github.com/moby/sys/mountinfo"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// Report is what `caisson inspect` prints: the isolation really in force for the calling process, read from the
// kernel (/proc/self), next to init's Record of what it applied.
type Report struct {
	Namespaces   map[string]string `json:"namespaces"` // name -> "type:[inode]"
	UIDMap       []string          `json:"uid_map"`
	GIDMap       []string          `json:"gid_map"`
	Capabilities Caps              `json:"capabilities"`
	// Seccomp is the mode from /proc/self/status: "disabled", "strict" or "filter".
	Seccomp        string `json:"seccomp"`
	SeccompFilters int    `json:"seccomp_filters"`
	NoNewPrivs     bool   `json:"no_new_privs"`
	// LandlockKernelABI is the running kernel's Landlock ABI (0: none).
	LandlockKernelABI int               `json:"landlock_kernel_abi"`
	MaxUserNSes       string            `json:"max_user_namespaces"`
	Rlimits           map[string]string `json:"rlimits"`
	WritableMounts    []Mount           `json:"writable_mounts"`
	Interfaces        []string          `json:"interfaces"`
	// Egress are the egress rules in force in the network namespace, read from the kernel (only inside a
	// sandbox with a user-mode network).
	Egress []string `json:"egress,omitempty"`
	// CgroupLimits are the limits set in the process's cgroups that the caller can see, file name -> value
	// (memory.max, pids.max, cpu.max, or their cgroup v1 counterparts); unlimited files are left out.
	CgroupLimits map[string]string `json:"cgroup_limits"`
	// Record is init's record (RecordFile), nil outside a caisson sandbox.
	Record *Record `json:"record"`
	// Warnings lists disagreements between the record and the kernel's view.
	Warnings []string `json:"warnings,omitempty"`
	// HostNamespaces are the caller's namespaces and SharedWithHost those the sandbox shares with them (only
	// with `caisson inspect NAME`, from outside).
	HostNamespaces map[string]string `json:"host_namespaces,omitempty"`
	SharedWithHost []string          `json:"shared_with_host,omitempty"`
}

// compareWithHost fills HostNamespaces and SharedWithHost from the caller's /proc/self/ns.
func (r *Report) compareWithHost() {
	r.HostNamespaces = map[string]string{}
	for _, ns := range config.Namespaces {
		if l, err := os.Readlink("/proc/self/ns/" + ns); err == nil {
			r.HostNamespaces[ns] = l
			if r.Namespaces[ns] == l {
				r.SharedWithHost = append(r.SharedWithHost, ns)
			}
		}
	}
}

// Caps are the five capability sets, decoded.
type Caps struct {
	Effective   []string `json:"effective"`
	Permitted   []string `json:"permitted"`
	Inheritable []string `json:"inheritable"`
	Bounding    []string `json:"bounding"`
	Ambient     []string `json:"ambient"`
}

// Mount is one writable mount of the calling process.
type Mount struct {
	Target string `json:"target"`
	FSType string `json:"fstype"`
	Source string `json:"source"`
	ID     int    `json:"-"` // the mount's ID in mountinfo
}

// InspectFlags defines the flags of `caisson inspect` (read by InspectMain, completion and the man pages).
func InspectFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("inspect", pflag.ContinueOnError)
	fs.Bool("json", false, "print JSON")
	return fs
}

// InspectMain runs `caisson inspect [--json]` and returns the exit code.
func InspectMain(args []string) int {
	fs := InspectFlags()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Print("Usage: caisson inspect [--json] [NAME]\n\nInside a sandbox: prints the isolation in force for this process. With NAME, from outside: the isolation of that\nsandbox's command, compared with your own namespaces.\n")
			return 0
		}
		fmt.Fprintf(os.Stderr, "caisson: inspect: %v\n", err)
		return 125
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(os.Stderr, "caisson: inspect: unexpected argument %q (usage: caisson inspect [--json] [NAME])\n", fs.Arg(1))
		return 125
	}
	pid := 0
	if fs.NArg() == 1 {
		rec, err := state.Lookup(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(os.Stderr, "caisson: inspect: %v\n", err)
			return 125
		}
		if pid = rec.CommandPID; pid <= 0 {
			fmt.Fprintf(os.Stderr, "caisson: inspect: sandbox %s has no running command yet\n", rec.Name)
			return 125
		}
	}
	r, err := InspectProcess(pid)
	if err == nil && pid > 0 {
		r.compareWithHost()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "caisson: inspect: %v\n", err)
		return 1
	}
	if asJSON, _ := fs.GetBool("json"); asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return 0
	}
	r.WriteText(os.Stdout)
	return 0
}

// Inspect reads the calling process's isolation from /proc/self and init's record.
func Inspect() (*Report, error) { return InspectProcess(0) }

// InspectProcess reads the isolation of process pid (0: the caller) from /proc/PID and the record init left in
// the process's root. From outside a sandbox it reports what its command runs under; the sandbox's own
// user.max_user_namespaces cannot be read from outside and is left empty then.
func InspectProcess(pid int) (*Report, error) {
	proc := "/proc/self"
	if pid > 0 {
		proc = "/proc/" + strconv.Itoa(pid)
	}
	r := &Report{Namespaces: map[string]string{}, Rlimits: map[string]string{}}
	for _, ns := range config.Namespaces {
		if l, err := os.Readlink(proc + "/ns/" + ns); err == nil {
			r.Namespaces[ns] = l
		}
	}
	r.UIDMap = mapLines(proc + "/uid_map")
	r.GIDMap = mapLines(proc + "/gid_map")
	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		return nil, err
	}
	if err := r.parseStatus(string(status)); err != nil {
		return nil, err
	}
	r.LandlockKernelABI, _ = LandlockABI()
	if pid == 0 {
		if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil {
			r.MaxUserNSes = strings.TrimSpace(string(b))
		}
	}
	for _, name := range []string{"nofile", "nproc", "as", "cpu", "fsize", "core"} {
		rl, _ := config.ParseRlimit(name + "=1")
		var lim unix.Rlimit
		if err := unix.Prlimit(pid, rl.Resource, nil, &lim); err == nil {
			r.Rlimits[name] = FormatLimit(lim.Cur) + ":" + FormatLimit(lim.Max)
		}
	}
	if mi, err := os.ReadFile(proc + "/mountinfo"); err == nil {
		r.WritableMounts = WritableMounts(string(mi))
	}
	if b, err := os.ReadFile(proc + "/net/dev"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[2:] {
			if name, _, ok := strings.Cut(line, ":"); ok {
				r.Interfaces = append(r.Interfaces, strings.TrimSpace(name))
			}
		}
	}
	r.CgroupLimits = cgroupLimits(proc)
	record := RecordFile
	if pid > 0 {
		record = proc + "/root" + RecordFile
	}
	if b, err := os.ReadFile(record); err == nil {
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("%s: %w", record, err)
		}
		r.Record = &rec
		if pid == 0 && len(rec.Egress) > 0 {
			if rules, err := slirp.EgressInForce(); err == nil {
				for _, e := range rules {
					r.Egress = append(r.Egress, e.String())
				}
			} else {
				r.Warnings = append(r.Warnings, err.Error())
			}
		}
		r.crossCheck(pid == 0)
	}
	return r, nil
}

// cgroupLimits reads the limits that bind the process at proc, through the caller's cgroup mounts: for each limit
// file, the value of the closest group, from the process's own up to the top of what the mount shows, that sets
// one (a sandbox's processes live in a child of the group that holds its limits).
func cgroupLimits(proc string) map[string]string {
	out := map[string]string{}
	self, err := os.ReadFile(proc + "/cgroup")
	if err != nil {
		return out
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return out
	}
	h := cgroup.ParseHost(self, mounts)
	var dirs []string
	if h.V2 != nil {
		dirs = append(dirs, h.V2.Dir)
	}
	for _, p := range h.V1 {
		dirs = append(dirs, p.Dir)
	}
	for _, dir := range dirs {
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
				break // above the hierarchy's mount
			}
			for _, f := range []string{"memory.max", "memory.swap.max", "pids.max", "cpu.max", "memory.limit_in_bytes",
				"memory.memsw.limit_in_bytes", "cpu.cfs_quota_us"} {
				if _, seen := out[f]; seen {
					continue
				}
				b, err := os.ReadFile(filepath.Join(d, f))
				v := strings.TrimSpace(string(b))
				if err != nil || v == "max" || v == "-1" || strings.HasPrefix(v, "max ") || v == "9223372036854771712" {
					continue
				}
				out[f] = v
			}
			if d == "/" {
				break
			}
		}
	}
	return out
}

// parseStatus fills the capability, seccomp and no_new_privs fields from /proc/self/status.
func (r *Report) parseStatus(status string) error {
	sets := map[string]*[]string{"CapEff": &r.Capabilities.Effective, "CapPrm": &r.Capabilities.Permitted,
		"CapInh": &r.Capabilities.Inheritable, "CapBnd": &r.Capabilities.Bounding, "CapAmb": &r.Capabilities.Ambient}
	r.Seccomp = "unknown"
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if dst, ok := sets[k]; ok {
			s, err := ParseCapMask(v)
			if err != nil {
				return fmt.Errorf("/proc/self/status: %s: %w", k, err)
			}
			*dst = CapList(s)
		}
		switch k {
		case "NoNewPrivs":
			r.NoNewPrivs = v == "1"
		case "Seccomp":
			r.Seccomp = map[string]string{"0": "disabled", "1": "strict", "2": "filter"}[v]
		case "Seccomp_filters":
			r.SeccompFilters, _ = strconv.Atoi(v)
		}
	}
	return nil
}

// crossCheck notes where the kernel's view disagrees with init's record.
func (r *Report) crossCheck(inside bool) {
	rec := r.Record
	if inside && len(rec.Egress) > 0 && !sameRules(rec.Egress, r.Egress) {
		r.Warnings = append(r.Warnings, "the egress rules in force differ from those init installed (root inside can change them in the default posture)")
	}
	if rec.Seccomp.Digest != "" && r.Seccomp != "filter" {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the record names seccomp filter %s but this process has seccomp %s", rec.Seccomp.Digest, r.Seccomp))
	}
	if rec.Posture == config.PostureStrict && len(r.Capabilities.Bounding) > len(rec.Bounding) {
		r.Warnings = append(r.Warnings, "this process's bounding set is larger than the one init applied")
	}
}

// sameRules compares installed rules (which may carry " (default)") with rules read back from the kernel.
func sameRules(installed, inForce []string) bool {
	if len(installed) != len(inForce) {
		return false
	}
	for i := range installed {
		if strings.TrimSuffix(installed[i], " (default)") != inForce[i] {
			return false
		}
	}
	return true
}

// mapLines returns the lines of an ID map file, with runs of spaces collapsed.
func mapLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

// WritableMounts returns the mounts of a /proc/PID/mountinfo text whose per-mount options include rw.
func WritableMounts(mountinfo string) []Mount {
	var out []Mount
	for _, line := range strings.Split(mountinfo, "\n") {
		// id parent major:minor root target options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 2 {
			continue
		}
		rw := false
		for _, o := range strings.Split(f[5], ",") {
			rw = rw || o == "rw"
		}
		if rw {
			id, _ := strconv.Atoi(f[0])
			out = append(out, Mount{Target: unescapeMount(f[4]), FSType: g[0], Source: unescapeMount(g[1]), ID: id})
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	list := func(l []string) string {
		if len(l) == 0 {
			return "none"
		}
		return strings.Join(l, " ")
	}
	if r.Record != nil {
		p("posture:        %s\n", r.Record.Posture)
	} else {
		p("posture:        unknown (no %s: not in a caisson sandbox, or its root has no /run)\n", RecordFile)
	}
	p("namespaces:\n")
	for _, ns := range config.Namespaces {
		p("  %-7s %s", ns, r.Namespaces[ns])
		if h, ok := r.HostNamespaces[ns]; ok {
			if h == r.Namespaces[ns] {
				p("  (shared with yours)")
			} else {
				p("  (yours: %s)", h)
			}
		}
		p("\n")
	}
	p("uid_map:        %s\n", strings.Join(r.UIDMap, "; "))
	p("gid_map:        %s\n", strings.Join(r.GIDMap, "; "))
	p("capabilities:\n  effective:    %s\n  permitted:    %s\n  inheritable:  %s\n  bounding:     %s\n  ambient:      %s\n",
		list(r.Capabilities.Effective), list(r.Capabilities.Permitted), list(r.Capabilities.Inheritable),
		list(r.Capabilities.Bounding), list(r.Capabilities.Ambient))
	p("no_new_privs:   %v\n", r.NoNewPrivs)
	p("seccomp:        %s (%d filters)", r.Seccomp, r.SeccompFilters)
	if r.Record != nil {
		p(", profile %s", r.Record.Seccomp.Profile)
		if r.Record.Seccomp.Digest != "" {
			p(", %d instructions, %s", r.Record.Seccomp.Instructions, r.Record.Seccomp.Digest)
		}
	}
	p("\n")
	switch {
	case r.Record == nil || r.Record.Landlock == nil:
		p("landlock:       not applied (kernel ABI %d)\n", r.LandlockKernelABI)
	case r.Record.Landlock.ABI == 0:
		p("landlock:       not enforced: %s (kernel ABI %d)\n", list(r.Record.Landlock.Missing), r.LandlockKernelABI)
	default:
		ll := r.Record.Landlock
		mode := "--landlock=" + ll.Mode
		if ll.Mode == config.LandlockAuto {
			mode = "--security strict's own: the read-write mounts"
		}
		p("landlock:       ABI %d enforced (kernel ABI %d, %s); writable beneath: %s; scopes: %s\n",
			ll.ABI, ll.KernelABI, mode, list(ll.Writable), list(ll.Scopes))
		if len(ll.Stdio) > 0 {
			p("                reopenable: %s\n", strings.Join(ll.Stdio, "; "))
		}
		if len(ll.Missing) > 0 {
			p("                not enforced on this kernel: %s\n", list(ll.Missing))
		}
	}
	if r.MaxUserNSes == "" {
		p("max_user_namespaces: not readable from outside the sandbox\n")
	} else {
		p("max_user_namespaces: %s\n", r.MaxUserNSes)
	}
	p("rlimits:       ")
	for _, n := range []string{"nofile", "nproc", "as", "cpu", "fsize", "core"} {
		p(" %s=%s", n, r.Rlimits[n])
	}
	p("\ncgroup limits: ")
	if len(r.CgroupLimits) == 0 {
		p(" none visible")
	}
	keys := make([]string, 0, len(r.CgroupLimits))
	for k := range r.CgroupLimits {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p(" %s=%s", k, strings.ReplaceAll(r.CgroupLimits[k], " ", "/"))
	}
	p("\nwritable mounts:\n")
	for _, m := range r.WritableMounts {
		p("  %-24s %s (%s)\n", m.Target, m.FSType, m.Source)
	}
	net := "unknown"
	if r.Record != nil {
		net = r.Record.NetMode
	}
	p("network:        %s (interfaces: %s)\n", net, list(r.Interfaces))
	switch {
	case len(r.Egress) > 0:
		p("egress:         %s (first match wins)\n", strings.Join(r.Egress, ", "))
	case r.Record != nil && len(r.Record.Egress) > 0:
		p("egress:         %s (as installed)\n", strings.Join(r.Record.Egress, ", "))
	}
	for _, w := range r.Warnings {
		p("warning: %s\n", w)
	}
}
