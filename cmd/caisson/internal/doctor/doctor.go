// Package doctor implements `caisson doctor`: every host prerequisite of `caisson run`, measured rather than
// guessed (a short-lived probe process really creates a user namespace and mounts proc, tmpfs and overlayfs in
// it), each failing one with the exact fix.
package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cgroup"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/harden"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/slirp"
	"github.com/moby/sys/userns"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// Status of one check.
type Status string

// The statuses: ok, warn (run works, a feature does not) and fail (run will not work).
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one prerequisite and its verdict.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is the whole doctor output.
type Report struct {
	Checks []Check `json:"checks"`
	// RunWorks is true when `caisson run` will work (no check failed).
	RunWorks bool `json:"run_works"`
	// IDMap is the plan `caisson run` would use.
	IDMap *idmap.Plan `json:"idmap,omitempty"`
	// Container is the sandbox caisson runs in (engine "" on a host).
	Container outer.Sandbox `json:"container"`
}

// Flags defines the flags of `caisson doctor` (read by Main, completion and the man pages).
func Flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("doctor", pflag.ContinueOnError)
	fs.Bool("json", false, "print JSON")
	return fs
}

// Main runs `caisson doctor [--json]` and returns the exit code: 0 when run will work, 1 otherwise, 125 on a
// usage error.
func Main(args []string) int {
	fs := Flags()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "caisson: doctor: %v\n", err)
		return 125
	}
	r := Run(context.Background())
	if asJSON, _ := fs.GetBool("json"); asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	} else {
		for _, c := range r.Checks {
			fmt.Printf("%-4s  %-26s %s\n", c.Status, c.Name, c.Detail)
			if c.Fix != "" && c.Status != OK {
				fmt.Printf("      %-26s fix: %s\n", "", c.Fix)
			}
		}
		if r.RunWorks {
			fmt.Println("caisson run will work on this host.")
		} else {
			fmt.Println("caisson run will NOT work on this host: fix the failed checks above.")
		}
	}
	if !r.RunWorks {
		return 1
	}
	return 0
}

// Run performs every check.
func Run(ctx context.Context) *Report {
	r := &Report{}
	add := func(c Check) { r.Checks = append(r.Checks, c) }
	add(kernelCheck())
	for _, c := range usernsSysctls() {
		add(c)
	}
	add(nestingCheck())
	o := outer.Detect(userns.RunningInUserNS)
	r.Container = o
	add(containerCheck(o))
	probe := runProbe()
	add(timeNSCheck(probe, o))
	add(probe.usernsCheck(o))
	add(probe.mountsCheck(o))
	caller := parent.CurrentCaller()
	for _, name := range []string{"newuidmap", "newgidmap"} {
		h := idmap.FindHelper(name)
		c := Check{Name: name, Status: OK, Detail: h.Path}
		switch {
		case h.Err != nil:
			c.Status, c.Detail = Warn, h.Err.Error()
			c.Fix = "apt-get install uidmap (Debian/Ubuntu) or dnf install shadow-utils; the tool must be setuid root or carry cap_setuid/cap_setgid file capabilities"
		case h.Setuid:
			c.Detail += " (setuid root)"
		case h.FileCaps:
			c.Detail += " (file capabilities)"
		}
		add(c)
	}
	nnp := Check{Name: "no_new_privs", Status: OK, Detail: "not set"}
	if caller.NoNewPrivs {
		nnp.Status, nnp.Detail = Warn, "set on this process: setuid newuidmap cannot work, run falls back to --map single"
		nnp.Fix = "start caisson from a shell without no_new_privs (e.g. not from inside another sandbox or a systemd unit with NoNewPrivileges=yes)"
	}
	add(nnp)
	plan, err := parent.NewPlan(ctx, "auto", caller)
	if err != nil {
		add(Check{Name: "id maps", Status: Fail, Detail: err.Error()})
	} else {
		r.IDMap = plan
		c := Check{Name: "id maps", Status: OK,
			Detail: fmt.Sprintf("mode %s: uid_map %s; gid_map %s", plan.Mode, oneLine(plan.UIDMap), oneLine(plan.GIDMap))}
		if plan.Mode != plan.Requested {
			c.Status = Warn
			c.Detail += " (" + strings.TrimPrefix(plan.Notice, "caisson: notice: ") + ")"
			c.Fix = fmt.Sprintf("as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s", nonEmpty(caller.User, strconv.Itoa(int(caller.UID))))
		}
		add(c)
		add(subIDLinesCheck(plan))
	}
	add(probe.procCheck(o))
	add(probe.sysCheck(o))
	add(probe.hostnameCheck(o))
	add(probe.overlayCheck())
	add(probe.overlayDriverCheck())
	add(tunCheck(o))
	add(probe.setnsCheck(o))
	for _, m := range []slirp.Mode{slirp.ModePasta, slirp.ModeSlirp4netns} {
		add(netCheck(slirp.Detect(m)))
	}
	add(cgroupCheck(o))
	add(landlockCheck(o))
	add(probe.seccompCheck(o))
	r.RunWorks = true
	for _, c := range r.Checks {
		if c.Status == Fail {
			r.RunWorks = false
		}
	}
	return r
}

// subIDLinesCheck lists the problems found in /etc/subuid and /etc/subgid, other users' invalid lines included
// (which `caisson run` does not show).
func subIDLinesCheck(p *idmap.Plan) Check {
	c := Check{Name: "subuid/subgid files", Status: OK, Detail: "no problem found"}
	all := append(append([]string{}, p.Warnings...), p.OtherWarnings...)
	if len(all) > 0 {
		c.Status = Warn
		c.Detail = strings.Join(all, "; ")
		if len(p.OtherWarnings) > 0 {
			c.Detail += fmt.Sprintf(" (%d of these are other users' lines, which caisson run does not show)", len(p.OtherWarnings))
		}
		c.Fix = "as root, fix or remove the lines named: newuidmap ignores them as well"
	}
	return c
}

func oneLine(maps []idmap.Mapping) string {
	return strings.ReplaceAll(strings.TrimSpace(idmap.Format(maps)), "\n", ", ")
}

func nonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// kernelCheck requires the new mount API with mount_setattr (Linux 5.12).
func kernelCheck() Check {
	var u unix.Utsname
	_ = unix.Uname(&u)
	rel := unix.ByteSliceToString(u.Release[:])
	c := Check{Name: "kernel", Status: OK, Detail: rel}
	var major, minor int
	fmt.Sscanf(rel, "%d.%d", &major, &minor)
	if major < 5 || (major == 5 && minor < 12) {
		c.Status = Fail
		c.Detail += ": caisson needs Linux 5.12 or newer (mount_setattr, open_tree, fsopen)"
		c.Fix = "upgrade the kernel"
	}
	return c
}

// usernsSysctls reads the distribution knobs that forbid unprivileged user namespaces.
func usernsSysctls() []Check { return usernsSysctlsIn("/proc/sys") }

// usernsSysctlsIn is usernsSysctls reading the sysctl tree at root (tests pass a directory of their own).
func usernsSysctlsIn(root string) []Check {
	var out []Check
	read := func(p string) (int, bool) {
		b, err := os.ReadFile(filepath.Join(root, strings.TrimPrefix(p, "/proc/sys/")))
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return n, err == nil
	}
	if n, ok := read("/proc/sys/user/max_user_namespaces"); ok {
		c := Check{Name: "user.max_user_namespaces", Status: OK, Detail: strconv.Itoa(n)}
		if n == 0 {
			c.Status, c.Fix = Fail, "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/)"
		}
		out = append(out, c)
	}
	if n, ok := read("/proc/sys/kernel/unprivileged_userns_clone"); ok {
		c := Check{Name: "unprivileged_userns_clone", Status: OK, Detail: strconv.Itoa(n)}
		if n == 0 {
			c.Status, c.Fix = Fail, "sysctl -w kernel.unprivileged_userns_clone=1 (Debian's knob; persist it in /etc/sysctl.d/)"
		}
		out = append(out, c)
	}
	if n, ok := read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok {
		c := Check{Name: "apparmor userns", Status: OK, Detail: "apparmor_restrict_unprivileged_userns=" + strconv.Itoa(n)}
		if n != 0 {
			exe, _ := os.Executable()
			c.Status = Warn
			c.Detail += ": Ubuntu strips capabilities in new user namespaces unless a profile allows them"
			c.Fix = fmt.Sprintf("as root, write /etc/apparmor.d/caisson with:\n"+
				"        abi <abi/4.0>,\n        include <tunables/global>\n        profile caisson %s flags=(unconfined) {\n          userns,\n        }\n"+
				"      then: apparmor_parser -r /etc/apparmor.d/caisson", exe)
		}
		out = append(out, c)
	}
	return out
}

// nestingCheck says whether caisson itself runs inside a user namespace (a container, another sandbox): it works
// there too, but the outer one decides what is allowed (nested namespaces, a fully visible /proc).
func nestingCheck() Check {
	c := Check{Name: "nesting", Status: OK, Detail: "caisson runs in the host's initial user namespace"}
	if userns.RunningInUserNS() {
		c.Detail = "caisson runs inside a user namespace (a container or another sandbox): the outer one limits what works; see the checks below"
	}
	return c
}

// timeNSCheck reports whether the kernel has time namespaces: without them sandboxes share the host's clocks
// and --time-offset is refused.
func timeNSCheck(r probeResult, o outer.Sandbox) Check {
	c := Check{Name: "time namespace", Status: OK, Detail: "available (--time-offset works)"}
	if _, err := os.Stat("/proc/self/ns/time"); err != nil {
		c.Status = Warn
		c.Detail = "this kernel has none: sandboxes share the host's clocks and --time-offset will not work"
		c.Fix = "boot Linux 5.6+ built with CONFIG_TIME_NS"
	} else if r.StartErr == "" && r.TimeNS != "" {
		c.Status = Warn
		c.Detail = "refused (" + r.TimeNS + "): " + o.Why(outer.NeedTimeNS) + "; sandboxes share the outer one (notice) and --time-offset will not work"
		c.Fix = o.Fix(outer.NeedTimeNS)
	}
	return c
}

// tunCheck opens /dev/net/tun, which pasta and slirp4netns need.
func tunCheck(o outer.Sandbox) Check {
	c := Check{Name: "/dev/net/tun", Status: OK, Detail: "usable"}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		c.Status = Warn
		c.Detail = fmt.Sprintf("%v: --net pasta and --net slirp4netns will not work", errors.Unwrap(err))
		c.Fix = o.Fix(outer.NeedTun) // on a host: chmod 0666 /dev/net/tun
		if o.In() {
			c.Detail += ": " + o.Why(outer.NeedTun)
		}
		return c
	}
	f.Close()
	return c
}

// netCheck reports one network driver.
func netCheck(f slirp.Features) Check {
	c := Check{Name: "net " + string(f.Mode), Status: OK}
	if f.Err != nil {
		c.Status, c.Detail = Warn, fmt.Sprintf("--net %s will not work: %v", f.Mode, f.Err)
		switch {
		case f.Path == "":
			pkg := map[slirp.Mode]string{slirp.ModePasta: "passt", slirp.ModeSlirp4netns: "slirp4netns"}[f.Mode]
			c.Fix = "apt-get install " + pkg
		case len(f.Missing) == 1 && f.Missing[0] == "/dev/net/tun":
			c.Fix = "see /dev/net/tun above"
		case len(f.Missing) > 0:
			c.Fix = "install a newer " + filepath.Base(f.Path)
		}
		return c
	}
	c.Detail = strings.TrimSpace(f.Path + " " + f.Version)
	if len(f.Missing) > 0 {
		c.Detail += "; missing: " + strings.Join(f.Missing, ", ")
	}
	return c
}

// cgroupCheck says where --memory, --pids, --cpus and --cgroup can be enforced: the caller's delegated cgroup v2
// group and its controllers, or the cgroup v1 hierarchies whose current group the caller owns.
func cgroupCheck(o outer.Sandbox) Check {
	c := Check{Name: "cgroup delegation", Status: Warn}
	h, err := cgroup.Discover()
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	var parts, limits []string
	if h.V2 != nil {
		if err := h.Check(cgroup.Limits{}, true); err != nil {
			parts = append(parts, "v2: "+strings.TrimPrefix(err.Error(), "--cgroup: "))
		} else {
			parts = append(parts, fmt.Sprintf("v2: %s delegated (controllers: %s)", h.V2.Dir, strings.Join(h.V2.Controllers, " ")))
		}
	} else {
		parts = append(parts, "no cgroup v2 hierarchy")
	}
	for _, l := range []struct {
		flag string
		lim  cgroup.Limits
	}{{"--memory", cgroup.Limits{Memory: 1 << 30}}, {"--pids", cgroup.Limits{Pids: 1}}, {"--cpus", cgroup.Limits{CPUs: 1}}} {
		if err := h.Check(l.lim, false); err == nil {
			limits = append(limits, l.flag)
		}
	}
	for _, p := range h.V1 {
		relevant := slices.ContainsFunc(p.Controllers, func(c string) bool { return c == "cpu" || c == "memory" || c == "pids" })
		if relevant && cgroup.Writable(p.Dir) {
			parts = append(parts, fmt.Sprintf("v1 %s: %s delegated", strings.Join(p.Controllers, ","), p.Dir))
		}
	}
	c.Detail = strings.Join(parts, "; ")
	if len(limits) == 3 {
		c.Status = OK
	}
	if len(limits) > 0 {
		c.Detail += "; available: " + strings.Join(limits, " ")
	} else {
		c.Detail += "; --memory, --pids and --cpus are unavailable (--rlimit works everywhere)"
	}
	if len(limits) < 3 {
		c.Fix = cgroup.Hint
		if o.In() {
			c.Fix = o.Fix(outer.NeedCgroup)
		}
	}
	return c
}

// ProbeName is the argv[0] of the probe stage.
const ProbeName = "caisson-probe"

// probeResult is what the probe process reports.
type probeResult struct {
	StartErr   string `json:"-"`
	Proc       string `json:"proc"`    // "" or the error
	Overlay    string `json:"overlay"` // "" or the error
	OverlayRan bool   `json:"overlay_ran"`
	Fuse       string `json:"fuse"` // "" or why a FUSE file system cannot be mounted in the user namespace
	// What an outer sandbox's filter or masks can refuse, each "" or the error (probeOuter).
	Hostname string `json:"hostname"`  // sethostname in the probe's own UTS namespace
	Sys      string `json:"sys"`       // a fresh sysfs for its own network namespace
	MountAPI string `json:"mount_api"` // fsopen, fsconfig and fsmount of a tmpfs
	TimeNS   string `json:"time_ns"`   // unshare(CLONE_NEWTIME)
	Setns    string `json:"setns"`     // setns into its own network namespace
	Seccomp  string `json:"seccomp"`   // seccomp(2), as caisson's filter uses it on top of the outer one
}

// runProbe starts the probe in new user, mount and PID namespaces with a single-id map (which needs no helper).
func runProbe() probeResult {
	var out bytes.Buffer
	cmd := &exec.Cmd{
		Path:   "/proc/self/exe",
		Args:   []string{ProbeName},
		Stdout: &out,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
			Pdeathsig:   unix.SIGKILL,
		},
		WaitDelay: time.Second,
	}
	var r probeResult
	if err := cmd.Run(); err != nil && out.Len() == 0 {
		r.StartErr = err.Error()
		return r
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		r.StartErr = "probe: " + err.Error()
	}
	return r
}

func (r probeResult) usernsCheck(o outer.Sandbox) Check {
	c := Check{Name: "user namespaces", Status: OK, Detail: "an unprivileged user namespace was created"}
	if r.StartErr != "" {
		c.Status, c.Detail = Fail, "cannot create a user namespace: "+r.StartErr
		c.Fix = "see the sysctl checks above"
		if o.In() {
			c.Detail += ": " + o.Why(outer.NeedNamespaces)
			c.Fix = o.Fix(outer.NeedNamespaces)
		}
	}
	return c
}

// procCheck reports whether a new PID namespace gets a fresh procfs. Without one, run falls back to the outer
// /proc, read-only (with a notice): a warning, with the setting of the outer sandbox that lifts it.
func (r probeResult) procCheck(o outer.Sandbox) Check {
	c := r.refusedCheck("fresh /proc", r.Proc, Warn, "procfs mounts in a new PID namespace",
		"sandboxes show the outer /proc, read-only, with its processes", o, outer.NeedProc)
	if r.StartErr != "" {
		c.Status = Fail
	} else if c.Fix != "" {
		c.Fix += "; or --share pid"
	}
	return c
}

func (r probeResult) overlayCheck() Check {
	c := Check{Name: "overlayfs in user ns", Status: OK, Detail: "kernel overlayfs mounts with userxattr"}
	switch {
	case r.StartErr != "":
		c.Status, c.Detail = Warn, "not tested: no user namespace"
	case r.Overlay != "":
		c.Status, c.Detail = Warn, "kernel overlayfs unavailable in a user namespace: "+r.Overlay
		c.Fix = "Linux 5.11+ allows it; otherwise install fuse-overlayfs"
	}
	return c
}

// overlayDriverCheck says which driver --overlay of the host view will use, and why (rootfs chooses per run the
// same way: the kernel's overlayfs where the lower tree's owner is mapped, as for a --rootfs you own).
func (r probeResult) overlayDriverCheck() Check {
	c := Check{Name: "overlay driver", Status: OK}
	fuse := rootfs.FindFuseOverlayfs(os.Getenv("PATH"))
	forced := os.Getenv(rootfs.DriverEnv)
	var why error
	switch {
	case fuse == "":
		why = errors.New("fuse-overlayfs is not installed")
		c.Fix = "apt-get install fuse-overlayfs (Debian/Ubuntu) or dnf install fuse-overlayfs"
	case r.StartErr != "":
		why = errors.New("no user namespace")
	case r.Fuse != "":
		why = errors.New(r.Fuse)
		c.Fix = "as root: chmod 0666 /dev/fuse (the distribution default) and modprobe fuse"
	}
	switch {
	case forced == rootfs.DriverKernel:
		c.Detail = "--overlay uses kernel overlayfs (forced by " + rootfs.DriverEnv + "): files owned by the host's root stay read-only"
	case os.Getuid() == 0:
		c.Detail = "--overlay uses kernel overlayfs: you are root, every file's owner is mapped in the sandbox"
	case why == nil:
		c.Detail = fmt.Sprintf("--overlay of the host view uses fuse-overlayfs (%s): the host's root is not mapped in the sandbox, "+
			"so kernel overlayfs cannot copy its files up; --rootfs trees you own use kernel overlayfs", fuse)
	default:
		c.Status = Warn
		c.Detail = fmt.Sprintf("--overlay uses kernel overlayfs (%v): files owned by the host's root stay read-only in the sandbox", why)
		if forced == rootfs.DriverFuse {
			c.Status, c.Detail = Fail, fmt.Sprintf("%s=%s cannot work: %v", rootfs.DriverEnv, rootfs.DriverFuse, why)
		}
	}
	return c
}

// probeFuse mounts a FUSE file system (with no daemon: the connection is aborted when the device closes) the way
// rootfs does for fuse-overlayfs: /dev/fuse opened inside the user namespace, then fsopen/fsconfig.
func probeFuse() string {
	dev, err := rootfs.OpenFuseDevice()
	if err != nil {
		return "/dev/fuse: " + err.Error()
	}
	defer unix.Close(dev)
	fsfd, err := unix.Fsopen("fuse", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return "fsopen fuse: " + err.Error()
	}
	defer unix.Close(fsfd)
	for _, kv := range [][2]string{{"fd", strconv.Itoa(dev)}, {"rootmode", "40000"}, {"user_id", "0"}, {"group_id", "0"}} {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return "mount fuse: " + kv[0] + ": " + err.Error()
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return "mount fuse: " + err.Error()
	}
	return ""
}

// ProbeMain is the probe stage: it runs as root of a fresh user namespace, tries the mounts `run` needs, and prints
// a JSON probeResult on stdout.
func ProbeMain() int {
	var r probeResult
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		r.Proc, r.Overlay = err.Error(), err.Error()
	} else if err := unix.Mount("probe", "/tmp", "tmpfs", 0, ""); err != nil {
		r.Proc, r.Overlay = err.Error(), err.Error()
	} else {
		for _, d := range []string{"/tmp/proc", "/tmp/l", "/tmp/u", "/tmp/w", "/tmp/m"} {
			_ = os.Mkdir(d, 0o755)
		}
		if err := unix.Mount("proc", "/tmp/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			r.Proc = err.Error()
		}
		r.OverlayRan = true
		if err := unix.Mount("overlay", "/tmp/m", "overlay", 0, "lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w,userxattr"); err != nil {
			r.Overlay = err.Error()
		}
		r.Fuse = probeFuse()
		probeOuter(&r)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// landlockCheck reports the kernel's Landlock ABI (--landlock needs 3; its strict-mode scopes need 6).
func landlockCheck(o outer.Sandbox) Check {
	abi, err := harden.LandlockABI()
	c := Check{Name: "landlock", Status: OK, Detail: fmt.Sprintf("ABI %d", abi)}
	switch {
	case err != nil:
		c.Status, c.Detail = Warn, fmt.Sprintf("unavailable (%v): --landlock works only as --landlock=best-effort, which then restricts nothing, and --security strict runs without its own Landlock", err)
		c.Fix = "boot a kernel with CONFIG_SECURITY_LANDLOCK=y and landlock in lsm= (Linux 5.13+)"
		if o.In() && o.SeccompFilters > 0 && errors.Is(err, unix.ENOSYS) {
			// The container's filter answers ENOSYS for calls it does not know, as a kernel without them does.
			c.Detail += "; or " + o.Why(outer.NeedLandlock)
			c.Fix = o.Fix(outer.NeedLandlock) + "; if that does not help: " + c.Fix
		}
	case abi < 3:
		c.Status, c.Detail = Warn, fmt.Sprintf("ABI %d: --landlock needs ABI 3 (truncate); only --landlock=best-effort works, and --security strict's own Landlock cannot refuse truncate", abi)
		c.Fix = "upgrade the kernel (Linux 6.2+ has ABI 3)"
	case abi < 6:
		c.Status, c.Detail = Warn, fmt.Sprintf("ABI %d: --landlock works; --security strict needs ABI 6 for socket and signal scoping (its own Landlock runs without them)", abi)
		c.Fix = "upgrade the kernel (Linux 6.12+ has ABI 6)"
	}
	return c
}
