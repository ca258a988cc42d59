package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cgroup"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/harden"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/hook"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/nsenter"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/ociinit"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/ocispec"
	procpkg "github.com/caisson-sandbox/caisson/cmd/caisson/internal/proc"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
	"github.com/caisson-sandbox/caisson/idmap"
)

// StageName is argv[0] of a stage (what ps shows for a container's process until it execs).
const StageName = Name + "-init"

// createOpts are the flags of create and run.
type createOpts struct {
	bundle, pidFile, consoleSocket string
	noPivot, noNewKeyring          bool
	preserveFDs                    int
	detach, keep                   bool
}

func (o *createOpts) register(cmd string, fs *pflag.FlagSet) {
	fs.StringVarP(&o.bundle, "bundle", "b", ".", "the bundle directory (config.json and the root)")
	fs.StringVarP(&o.pidFile, "pid-file", "", "", "write the container process's PID to this file")
	fs.StringVarP(&o.consoleSocket, "console-socket", "", "", "AF_UNIX socket to send the terminal's master to (process.terminal)")
	fs.BoolVar(&o.noPivot, "no-pivot", false, "move the root and chroot instead of pivot_root (roots on ramfs)")
	fs.BoolVar(&o.noNewKeyring, "no-new-keyring", false, "accepted for runc compatibility (caisson-oci never creates a session keyring)")
	fs.IntVar(&o.preserveFDs, "preserve-fds", 0, "pass this many descriptors from 3 up to the container")
	if cmd == "run" {
		fs.BoolVarP(&o.detach, "detach", "d", false, "do not wait for the container's process")
		fs.BoolVar(&o.keep, "keep", false, "do not delete the container when its process exits")
	}
}

func (g *globals) create(args []string) error {
	var o createOpts
	fs := newFlags("create")
	o.register("create", fs)
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	id, err := oneID("create", fs.Args())
	if err != nil {
		return err
	}
	h, _, err := g.launch(id, &o)
	if err != nil {
		return err
	}
	h.unlock()
	return nil
}

// launch creates the container id: everything but starting its process. On failure nothing is left: no state
// directory, cgroup, mount or process. It returns the container's handle, still locked, and its process's PID.
func (g *globals) launch(id string, o *createOpts) (_ *handle, _ int, err error) {
	bundle, err := filepath.Abs(o.bundle)
	if err != nil {
		return nil, 0, err
	}
	if st, err := os.Stat(bundle); err != nil {
		return nil, 0, fmt.Errorf("bundle %s: %w", bundle, unwrapErr(err))
	} else if !st.IsDir() {
		return nil, 0, fmt.Errorf("bundle %s is not a directory", bundle)
	}
	if o.preserveFDs < 0 || o.preserveFDs > 1000 {
		return nil, 0, fmt.Errorf("--preserve-fds %d: out of range", o.preserveFDs)
	}
	spec, err := ocispec.ReadSpec(bundle)
	if err != nil {
		return nil, 0, err
	}
	plan, err := ocispec.Load(spec, bundle, id, ocispec.Options{NoPivot: o.noPivot, Rootless: g.rootlessMode,
		AppArmor: appArmorEnabled(), LastCap: harden.LastCap()})
	if err != nil {
		return nil, 0, err
	}
	if plan.Process.Terminal && o.consoleSocket == "" {
		return nil, 0, errors.New("process.terminal is true: --console-socket is required (the engine's end of the terminal)")
	}
	if g.systemdCgroup {
		if err := systemdReachable(); err != nil {
			return nil, 0, err
		}
	}
	st, err := g.store()
	if err != nil {
		return nil, 0, err
	}
	h, err := st.reserve(id)
	if err != nil {
		return nil, 0, err
	}
	var cg *cgroup.Container
	var proc *nsenter.Process
	defer func() {
		if err == nil {
			return
		}
		if proc != nil {
			reap(proc.PID)
			proc.Sock.Close()
		}
		if cg != nil {
			_ = cg.Destroy()
		}
		_ = h.remove()
	}()
	if cg, err = g.cgroups(spec, id); err != nil {
		return nil, 0, err
	}
	if err = unix.Mkfifo(h.fifoPath(), 0o622); err != nil {
		return nil, 0, fmt.Errorf("exec FIFO: %w", err)
	}
	_ = os.Chmod(h.fifoPath(), 0o622) // the umask may have taken bits; the container's user must open it
	fifo, err := os.OpenFile(h.fifoPath(), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("exec FIFO: %w", err)
	}
	defer fifo.Close()
	var console *os.File
	if plan.Process.Terminal {
		if console, err = dialConsole(o.consoleSocket); err != nil {
			return nil, 0, err
		}
		defer console.Close()
	}
	joins, closeJoins, err := openJoins(plan.NS.Join)
	if err != nil {
		return nil, 0, err
	}
	defer closeJoins()
	cmd := stageCmd(o.preserveFDs)
	req := nsenter.Request{
		Join:           nsenter.OrderJoins(joins),
		Clone:          plan.NS.New,
		SetIDAfterJoin: hasType(joins, unix.CLONE_NEWUSER),
		Fork:           plan.NS.Has(unix.CLONE_NEWPID) || plan.NS.Has(unix.CLONE_NEWTIME),
		TimeOffsets:    timeOffsets(plan.NS.TimeOffsets),
		Started: func(pid int) error {
			if cg != nil {
				if err := cg.Enter(pid); err != nil {
					return err
				}
			}
			return setOOMScoreAdj(pid, spec.Process.OOMScoreAdj)
		},
		WriteMaps: func(pid int) error { return writeMaps(pid, plan.NS.UIDMappings, plan.NS.GIDMappings) },
	}
	g.logDebug("create %s: new namespaces %#x, joined %d, fork %v, cgroups %v", id, req.Clone, len(req.Join), req.Fork, cg != nil)
	proc, err = nsenter.Start(cmd, req)
	if err != nil {
		return nil, 0, fmt.Errorf("nsenter: %w", err)
	}
	g.logDebug("create %s: the container's process is %d", id, proc.PID)
	startTime, err := procpkg.StartTime(proc.PID)
	if err != nil {
		return nil, 0, fmt.Errorf("the container's process %d: %w", proc.PID, err)
	}
	rootfs := plan.Root
	h.rec = &record{ID: id, Bundle: bundle, Rootfs: rootfs, PID: proc.PID, StartTime: startTime,
		Created: time.Now().UTC(), Owner: owner(), Annotations: spec.Annotations, Config: spec,
		Namespaces: plan.NS.Own, Rootless: g.rootlessMode}
	if cg != nil {
		h.rec.Cgroups, h.rec.CgroupPath, h.rec.CgroupUnified, h.rec.CgroupV2Only = cg.Dirs, cg.Path, cg.Unified, cg.V2Only
		plan.Cgroup = cgroupView(cg)
	} else {
		plan.Cgroup = ownCgroupView()
	}
	start := ociinit.Start{Role: ociinit.RoleCreate, Plan: plan, HasFIFO: true, HasConsole: console != nil, TTYGuard: true,
		BindDevices: g.rootlessMode || plan.NS.Has(unix.CLONE_NEWUSER)}
	fds := []int{int(fifo.Fd())}
	if console != nil {
		fds = append(fds, int(console.Fd()))
	}
	if err = wire.SendValue(proc.Sock, "start", start, fds...); err != nil {
		return nil, 0, fmt.Errorf("stage: %w", err)
	}
	for {
		var ev ociinit.Event
		if _, rerr := wire.RecvValue(proc.Sock, &ev); rerr != nil {
			return nil, 0, fmt.Errorf("the container's process exited during create%s", exitInfo(proc.PID))
		}
		switch ev.Type {
		case "mounted":
			if cg != nil {
				if err = applyResources(cg, spec.Linux.Resources, g.rootlessMode); err != nil {
					return nil, 0, err
				}
			}
			state := h.stateJSON(specs.StateCreating)
			if spec.Hooks != nil {
				if err = hook.RunAll("prestart", spec.Hooks.Prestart, state); err != nil {
					return nil, 0, err
				}
				if err = hook.RunAll("createRuntime", spec.Hooks.CreateRuntime, state); err != nil {
					return nil, 0, err
				}
			}
			if err = wire.SendValue(proc.Sock, "continue", ociinit.Event{Type: "continue", State: state}); err != nil {
				return nil, 0, fmt.Errorf("stage: %w", err)
			}
			continue
		case "created":
		case "error":
			return nil, 0, errors.New(ev.Error)
		default:
			return nil, 0, fmt.Errorf("stage: unexpected message %q", ev.Type)
		}
		break
	}
	proc.Sock.Close()
	if err = h.save(); err != nil {
		return nil, 0, err
	}
	if o.pidFile != "" {
		if err = writePidFile(o.pidFile, proc.PID); err != nil {
			return nil, 0, err
		}
	}
	return h, proc.PID, nil
}

// stageCmd is a re-execution of this binary as a stage, from a sealed copy when the caller could write the binary
// (CVE-2019-5736 class), with the preserved descriptors at 3 and up.
func stageCmd(preserve int) *exec.Cmd {
	cmd := &exec.Cmd{Path: harden.InitPath(), Args: []string{StageName}, Env: []string{},
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	for i := 0; i < preserve; i++ {
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(3+i), "preserved"))
	}
	return cmd
}

// exitInfo describes how the child pid ended, reaping it.
func exitInfo(pid int) string {
	var ws unix.WaitStatus
	for {
		got, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || got != pid {
			return ""
		}
		break
	}
	switch {
	case ws.Exited():
		return fmt.Sprintf(" (exit status %d)", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf(" (killed by %v)", ws.Signal())
	}
	return ""
}

// reap kills pid (a child of this process: the stage's child is re-parented here) and waits for it.
func reap(pid int) {
	_ = unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
			return
		}
	}
}

// hasType reports whether joins holds a namespace of type t.
func hasType(joins []nsenter.Join, t int) bool {
	for _, j := range joins {
		if j.Type == t {
			return true
		}
	}
	return false
}

// openJoins opens the namespaces to join and checks that each is a namespace of the type the config names.
func openJoins(paths []ocispec.NSPath) ([]nsenter.Join, func(), error) {
	var joins []nsenter.Join
	closeAll := func() {
		for _, j := range joins {
			j.File.Close()
		}
	}
	for _, p := range paths {
		f, err := os.Open(p.Path)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("config.json: linux.namespaces: %s namespace %s: %w", p.Name, p.Path, unwrapErr(err))
		}
		t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
		if err != nil {
			f.Close()
			closeAll()
			return nil, nil, fmt.Errorf("config.json: linux.namespaces: %s is not a namespace file: %v", p.Path, err)
		}
		if t != p.Type {
			f.Close()
			closeAll()
			return nil, nil, fmt.Errorf("config.json: linux.namespaces: %s is a %s namespace, not %s", p.Path,
				ocispec.NamespaceFile[uintptr(t)], p.Name)
		}
		joins = append(joins, nsenter.Join{Type: p.Type, File: f})
	}
	return joins, closeAll, nil
}

// timeOffsets converts config.json's offsets for the stage.
func timeOffsets(m map[string]specs.LinuxTimeOffset) *nsenter.TimeOffsets {
	if len(m) == 0 {
		return nil
	}
	o := &nsenter.TimeOffsets{}
	if v, ok := m["monotonic"]; ok {
		o.MonotonicSec, o.MonotonicNsec = v.Secs, v.Nanosecs
	}
	if v, ok := m["boottime"]; ok {
		o.BoottimeSec, o.BoottimeNsec = v.Secs, v.Nanosecs
	}
	return o
}

// writeMaps writes the maps of a new user namespace: directly when this process may (root of its user namespace,
// or a single map of its own ids), through newuidmap/newgidmap otherwise (the caller's /etc/subuid ranges).
func writeMaps(pid int, uids, gids []specs.LinuxIDMapping) error {
	conv := func(ms []specs.LinuxIDMapping) []idmap.Mapping {
		out := make([]idmap.Mapping, len(ms))
		for i, m := range ms {
			out[i] = idmap.Mapping{Inside: m.ContainerID, Outside: m.HostID, Count: m.Size}
		}
		return out
	}
	u, g := conv(uids), conv(gids)
	euid, egid := uint32(os.Geteuid()), uint32(os.Getegid())
	if euid == 0 {
		return idmap.WriteDirect(pid, u, g, false)
	}
	if len(u) == 1 && len(g) == 1 && u[0].Outside == euid && u[0].Count == 1 && g[0].Outside == egid && g[0].Count == 1 {
		return idmap.WriteDirect(pid, u, g, true)
	}
	uh, gh := idmap.FindHelper("newuidmap"), idmap.FindHelper("newgidmap")
	if !uh.Usable() || !gh.Usable() {
		return fmt.Errorf("config.json: linux.uidMappings: mapping more than your own ids needs newuidmap and newgidmap: %v",
			errors.Join(uh.Err, gh.Err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := idmap.RunHelpers(ctx, pid, uh, gh, u, g); err != nil {
		if hint := idmap.HintFor(err); hint != "" {
			return fmt.Errorf("config.json: linux.uidMappings: %w (%s)", err, hint)
		}
		return fmt.Errorf("config.json: linux.uidMappings: %w", err)
	}
	return nil
}

// setOOMScoreAdj writes process.oomScoreAdj for the stage (its children inherit it). Lowering the score needs
// CAP_SYS_RESOURCE, which some hosts withhold even from root (the CRI asks -998 for a pod's pause container).
func setOOMScoreAdj(pid int, v *int) error {
	if v == nil {
		return nil
	}
	err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(strconv.Itoa(*v)), 0)
	if err == nil {
		return nil
	}
	err = unwrapErrno(err)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		cur, _ := os.ReadFile("/proc/self/oom_score_adj")
		return fmt.Errorf("config.json: process.oomScoreAdj %d: %v: lowering it below the runtime's own (%s) needs "+
			"CAP_SYS_RESOURCE, which this runtime lacks (its bounding set: %s); with containerd's CRI set "+
			"restrict_oom_score_adj = true", *v, err, strings.TrimSpace(string(cur)), capBnd())
	}
	return fmt.Errorf("config.json: process.oomScoreAdj %d: %w", *v, err)
}

// capBnd reads this process's bounding set for messages.
func capBnd() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			return "0x" + strings.TrimLeft(strings.TrimSpace(v), "0")
		}
	}
	return "unknown"
}

func unwrapErrno(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// dialConsole connects to the engine's console socket.
func dialConsole(path string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("--console-socket %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("--console-socket %s is not a socket", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("--console-socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("--console-socket %s: connect: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "console-socket"), nil
}

// writePidFile writes pid to path atomically (a file beside it, then rename), as runc does.
func writePidFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_SYNC|unix.O_CLOEXEC, 0o666)
	if err != nil {
		return fmt.Errorf("--pid-file: %w", unwrapErr(err))
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	f.Close()
	if err == nil {
		err = os.Rename(tmp, abs)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--pid-file: %w", unwrapErr(err))
	}
	return nil
}

// owner is the state's owner field: the user name of the runtime's uid, "" for root as runc prints it.
func owner() string {
	if os.Geteuid() == 0 {
		return ""
	}
	return strconv.Itoa(os.Geteuid())
}

// appArmorEnabled reports whether the host enforces AppArmor.
func appArmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.HasPrefix(string(b), "Y")
}

// systemdReachable checks for a systemd manager to ask for cgroups.
func systemdReachable() error {
	for _, p := range []string{"/run/systemd/private", os.Getenv("XDG_RUNTIME_DIR") + "/systemd/private"} {
		if _, err := os.Stat(p); err == nil {
			return errors.New("--systemd-cgroup: the systemd cgroup driver is not implemented by caisson-oci; " +
				"configure the engine's cgroupfs driver (Podman: cgroup_manager = \"cgroupfs\"; containerd: SystemdCgroup = false)")
		}
	}
	return errors.New("--systemd-cgroup: no systemd manager is reachable here (no /run/systemd/private): " +
		"configure the engine's cgroupfs driver (Podman: cgroup_manager = \"cgroupfs\"; containerd: SystemdCgroup = false)")
}

// cgroups creates the container's cgroups from cgroupsPath and linux.resources. A rootless runtime without a path
// gets none; one without permission is refused only when the container asks for limits (runc's rule).
func (g *globals) cgroups(spec *specs.Spec, id string) (*cgroup.Container, error) {
	path := spec.Linux.CgroupsPath
	res := spec.Linux.Resources
	if path == "" {
		if g.rootlessMode {
			if hasLimits(res) {
				return nil, errors.New("config.json: linux.resources: limits need a cgroup, and a rootless runtime gets " +
					"none without linux.cgroupsPath (set it to a group delegated to you)")
			}
			return nil, nil
		}
		path = "/" + Name + "/" + id
	}
	if g.systemdCgroup || strings.Count(path, ":") == 2 && !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("config.json: linux.cgroupsPath %q is a systemd slice:prefix:name path; caisson-oci "+
			"implements the cgroupfs driver only", path)
	}
	cg, err := cgroup.PlanContainer(path)
	if err != nil {
		if g.rootlessMode && !hasLimits(res) {
			return nil, nil
		}
		return nil, err
	}
	// The groups first; the limits once the root is built (applyResources): device rules would refuse the nodes
	// the container's /dev is made of.
	ignore := g.rootlessMode && !hasLimits(res)
	if err := cg.Create(nil, ignore); err != nil {
		_ = cg.Destroy()
		if ignore {
			return nil, nil
		}
		return nil, err
	}
	if len(cg.Dirs) == 0 {
		return nil, nil
	}
	return cg, nil
}

// hasLimits reports whether res asks for any limit (device rules alone are not limits a rootless runtime can set).
func hasLimits(res *specs.LinuxResources) bool {
	if res == nil {
		return false
	}
	return res.Memory != nil || res.CPU != nil || res.Pids != nil || res.BlockIO != nil ||
		len(res.HugepageLimits) > 0 || res.Network != nil || len(res.Rdma) > 0 || len(res.Unified) > 0
}

// cgroupView is what a cgroup mount inside the container shows.
func cgroupView(cg *cgroup.Container) ocispec.CgroupView {
	v := ocispec.CgroupView{V2: cg.V2Only, Paths: map[string]string{}}
	for mp := range cg.Dirs {
		v.Paths[mp] = cg.Rel(mp)
	}
	return v
}

// ownCgroupView is the view of a container without cgroups of its own: the groups it shares with this process.
func ownCgroupView() ocispec.CgroupView {
	cg, err := cgroup.PlanContainer("")
	if err != nil {
		return ocispec.CgroupView{}
	}
	return cgroupView(cg)
}

// defaultDeviceRules are appended to a config's device rules, as runc does, so that a config that denies every
// device (runc spec's default) still lets the container use the nodes every container has: mknod of any node (its
// access is what the rules decide), /dev/null, zero, full, random, urandom, tty, ptmx, the pty slaves and tun.
var defaultDeviceRules = func() []specs.LinuxDeviceCgroup {
	n := func(v int64) *int64 { return &v }
	rules := []specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Access: "m"}, {Allow: true, Type: "b", Access: "m"},
		{Allow: true, Type: "c", Major: n(136), Access: "rwm"},
	}
	for _, d := range [][2]int64{{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 2}, {10, 200}} {
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: n(d[0]), Minor: n(d[1]), Access: "rwm"})
	}
	return rules
}()

// applyResources writes linux.resources into the container's groups, with the default device rules after the
// config's own (the config's stay first, in its order, as the spec asks). A rootless runtime skips device rules:
// it cannot write them (the kernel refuses devices cgroup changes outside the initial user namespace).
func applyResources(cg *cgroup.Container, res *specs.LinuxResources, rootless bool) error {
	if res == nil {
		return nil
	}
	r := *res
	if rootless {
		r.Devices = nil
	} else if len(r.Devices) > 0 {
		r.Devices = append(append([]specs.LinuxDeviceCgroup(nil), res.Devices...), defaultDeviceRules...)
	}
	return cg.Apply(&r)
}
