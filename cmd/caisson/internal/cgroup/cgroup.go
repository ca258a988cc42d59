// Package cgroup gives a sandbox a cgroup of its own beneath the one delegated to the caller, enforces --memory,
// --pids and --cpus there, and removes the group when the sandbox ends.
//
// cgroup v2 comes first. The caller's current cgroup must be delegated to it (cgroup.procs, cgroup.subtree_control
// and the directory writable: what systemd's Delegate=yes or a subtree an administrator chowned gives). The
// controllers the limits need are enabled in that group's cgroup.subtree_control; when the group still holds
// processes (the caller's shell, caisson itself), the kernel's no-internal-process rule forbids that, so they are
// moved into a child named LeafName first, as `rootlesskit --evacuate-cgroup2` does. The sandbox's group is a
// sibling of the leaf, and init is cloned straight into it (clone3 with CLONE_INTO_CGROUP): no process of the
// sandbox ever runs outside it, and the sandbox's cgroup namespace is rooted at it.
//
// A controller that only a cgroup v1 hierarchy offers (hybrid hosts) is used there when the caller's current
// cgroup in that hierarchy is writable by it; init is moved into the v1 groups before it runs anything.
//
// A group is named GroupPrefix + "<pid>-<start time>" of the caisson process that owns it, and holds the limits. The
// sandbox's processes live in its child InnerName, and the sandbox's cgroup namespace is rooted there: the group's
// own files are the caller's (root inside the sandbox is the caller), so a sandbox that could reach them through a
// cgroup file system mounted inside would raise its own limits; from the child it sees only the child, whose
// limits bind nothing beyond the group's. The owner removes both when the sandbox ends; a group whose owner died
// without doing so (SIGKILL) is removed by the next caisson that creates a group beside it.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/proc"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// LeafName is the child group the processes of a delegated cgroup v2 group are moved into before its controllers
// are enabled.
const LeafName = "caisson-leaf"

// GroupPrefix starts the name of every sandbox group.
const GroupPrefix = "caisson-"

// InnerName is the child of a sandbox group that holds the sandbox's processes.
const InnerName = "sandbox"

// CPUPeriod is the CFS period (µs) --cpus quotas are expressed in.
const CPUPeriod = 100000

// Limits are one sandbox's resource limits; a zero field sets no limit.
type Limits struct {
	// Memory is the memory limit in bytes (memory.max; no swap beyond it where the kernel accounts swap).
	Memory int64
	// Pids is the limit on the number of processes and threads (pids.max).
	Pids int64
	// CPUs is the CPU time allowed per wall-clock time, in CPUs (cpu.max quota over CPUPeriod).
	CPUs float64
}

// Any reports whether a limit is set.
func (l Limits) Any() bool { return l.Memory > 0 || l.Pids > 0 || l.CPUs > 0 }

// controllers lists the controllers the limits need, each with the flag that asked for it.
func (l Limits) controllers() [][2]string {
	var out [][2]string
	if l.CPUs > 0 {
		out = append(out, [2]string{"cpu", "--cpus"})
	}
	if l.Memory > 0 {
		out = append(out, [2]string{"memory", "--memory"})
	}
	if l.Pids > 0 {
		out = append(out, [2]string{"pids", "--pids"})
	}
	return out
}

// Place is the caller's current cgroup in one hierarchy.
type Place struct {
	// Dir is the group's directory on the host.
	Dir string
	// Controllers are the controllers the group can use: for v2, those listed in its cgroup.controllers (read by
	// Discover); for v1, the hierarchy's.
	Controllers []string
}

// Host is where the caller's cgroups are.
type Host struct {
	// V2 is the caller's group in the unified hierarchy, nil when none is mounted.
	V2 *Place
	// V1 are the caller's groups in the mounted v1 hierarchies that have controllers.
	V1 []Place
}

// Discover reads /proc/self/cgroup and the mount table.
func Discover() (*Host, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	h := ParseHost(self, mounts)
	if h.V2 != nil {
		// A caller that an earlier caisson moved into the leaf of its delegated group creates groups beside it.
		up := filepath.Dir(h.V2.Dir)
		if filepath.Base(h.V2.Dir) == LeafName && delegated(up, "cgroup.procs", "cgroup.subtree_control") == nil {
			h.V2.Dir = up
		}
		b, err := os.ReadFile(filepath.Join(h.V2.Dir, "cgroup.controllers"))
		if err == nil {
			h.V2.Controllers = strings.Fields(string(b))
		}
	}
	return h, nil
}

// ParseHost finds the caller's groups from the contents of /proc/self/cgroup and the cgroup mounts. A hierarchy
// mounted more than once is taken at its first mount that shows the caller's group.
func ParseHost(self []byte, mounts []*mountinfo.Info) *Host {
	h := &Host{}
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") {
			continue
		}
		if id == "0" && ctrls == "" {
			for _, m := range mounts {
				if m.FSType == "cgroup2" {
					if dir, ok := under(m, path); ok {
						h.V2 = &Place{Dir: dir}
						break
					}
				}
			}
			continue
		}
		var want []string
		for _, c := range strings.Split(ctrls, ",") {
			if c != "" && !strings.HasPrefix(c, "name=") {
				want = append(want, c)
			}
		}
		if len(want) == 0 {
			continue // a named hierarchy without controllers (name=systemd)
		}
		for _, m := range mounts {
			if m.FSType != "cgroup" || !hasAll(strings.Split(m.VFSOptions, ","), want) {
				continue
			}
			if dir, ok := under(m, path); ok {
				h.V1 = append(h.V1, Place{Dir: dir, Controllers: want})
				break
			}
		}
	}
	return h
}

// under returns where the group at path (relative to the caller's cgroup namespace) is in mount m.
func under(m *mountinfo.Info, path string) (string, bool) {
	root := m.Root
	if root == "/" {
		return filepath.Join(m.Mountpoint, path), true
	}
	if path == root || strings.HasPrefix(path, root+"/") {
		return filepath.Join(m.Mountpoint, strings.TrimPrefix(path, root)), true
	}
	return "", false
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// plan decides where each controller the limits need is enforced: in the v2 group when it offers the controller,
// else in a v1 hierarchy. It fails, naming the flag, when a controller is nowhere.
func (h *Host) plan(l Limits) (v2 []string, v1 map[string]Place, err error) {
	v1 = map[string]Place{}
	for _, c := range l.controllers() {
		ctrl, flag := c[0], c[1]
		if h.V2 != nil && slices.Contains(h.V2.Controllers, ctrl) {
			v2 = append(v2, ctrl)
			continue
		}
		found := false
		for _, p := range h.V1 {
			if slices.Contains(p.Controllers, ctrl) {
				v1[ctrl], found = p, true
				break
			}
		}
		if found {
			continue
		}
		if h.V2 == nil {
			return nil, nil, fmt.Errorf("%s: no cgroup hierarchy with the %s controller is mounted", flag, ctrl)
		}
		return nil, nil, fmt.Errorf("%s: the %s controller is not available in your cgroup %s (it offers: %s) "+
			"nor in a cgroup v1 hierarchy", flag, ctrl, h.V2.Dir, orNone(h.V2.Controllers))
	}
	return v2, v1, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

// Group is one sandbox's cgroups: at most one v2 group and one per v1 hierarchy used, each with its InnerName
// child.
type Group struct {
	// Name is the groups' directory name.
	Name string
	v2   string   // the v2 group's directory, "" when none
	v1   []string // the v1 groups' directories
	fd   *os.File // the v2 group's InnerName child, for CLONE_INTO_CGROUP
}

// delegated checks that the caller may create groups in dir and move processes into them.
func delegated(dir string, files ...string) error {
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("%s is not writable by you (not delegated)", dir)
	}
	for _, f := range files {
		if err := unix.Access(filepath.Join(dir, f), unix.W_OK); err != nil {
			return fmt.Errorf("%s is not writable by you (not delegated)", filepath.Join(dir, f))
		}
	}
	return nil
}

// Writable reports whether the caller may create groups in dir and move its processes there.
func Writable(dir string) bool { return delegated(dir, "cgroup.procs") == nil }

// Hint is the fix for a cgroup that is not delegated, for error messages and doctor.
const Hint = "run caisson in a delegated systemd scope: systemd-run --user --scope -p Delegate=yes caisson run ..."

// New creates the sandbox's groups under the caller's and writes the limits. own asks for a v2 group even without
// a limit that needs one. name is the groups' directory name (see GroupName).
func New(h *Host, l Limits, own bool, name string) (*Group, error) {
	if err := h.Check(l, own); err != nil {
		return nil, err
	}
	v2ctrls, v1, _ := h.plan(l)
	g := &Group{Name: name}
	ok := false
	defer func() {
		if !ok {
			_ = g.Destroy()
		}
	}()
	if len(v2ctrls) > 0 || own {
		flags := flagsFor(l, v2ctrls)
		Sweep(h.V2.Dir)
		on := v2ctrls
		if own {
			on = h.V2.Controllers // --cgroup: every controller the delegated group offers, for accounting
		}
		if err := enable(h.V2.Dir, on); err != nil {
			return nil, fmt.Errorf("%s: %v", flags, err)
		}
		dir := filepath.Join(h.V2.Dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: %v", flags, err)
		}
		g.v2 = dir
		if err := writeV2(dir, l, v2ctrls); err != nil {
			return nil, err
		}
		// The child gets the same controllers, so the sandbox sees its own usage (memory.current, pids.current).
		if err := enable(dir, on); err != nil {
			return nil, fmt.Errorf("%s: %v", flags, err)
		}
		inner := filepath.Join(dir, InnerName)
		if err := os.Mkdir(inner, 0o755); err != nil {
			return nil, fmt.Errorf("%s: %v", flags, err)
		}
		fd, err := os.OpenFile(inner, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", flags, err)
		}
		g.fd = fd
	}
	done := map[string]bool{}
	for _, c := range l.controllers() {
		p, isV1 := v1[c[0]]
		if !isV1 || done[p.Dir] {
			continue
		}
		done[p.Dir] = true
		Sweep(p.Dir)
		dir := filepath.Join(p.Dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: %v", c[1], err)
		}
		g.v1 = append(g.v1, dir)
		if err := writeV1(dir, l, p.Controllers); err != nil {
			return nil, err
		}
		if err := os.Mkdir(filepath.Join(dir, InnerName), 0o755); err != nil {
			return nil, fmt.Errorf("%s: %v", c[1], err)
		}
	}
	ok = true
	return g, nil
}

// Check reports, naming the flag, why the limits (and, with own, a v2 group of the sandbox's own) cannot be
// enforced for the caller, or nil when New can enforce them. It creates nothing.
func (h *Host) Check(l Limits, own bool) error {
	v2ctrls, v1, err := h.plan(l)
	if err != nil {
		return err
	}
	if len(v2ctrls) > 0 || own {
		if h.V2 == nil {
			return errors.New("--cgroup: no cgroup v2 hierarchy is mounted")
		}
		if err := delegated(h.V2.Dir, "cgroup.procs", "cgroup.subtree_control"); err != nil {
			return fmt.Errorf("%s: %v", flagsFor(l, v2ctrls), err)
		}
	}
	for _, c := range l.controllers() {
		if p, ok := v1[c[0]]; ok {
			if err := delegated(p.Dir, "cgroup.procs"); err != nil {
				return fmt.Errorf("%s: %v", c[1], err)
			}
		}
	}
	return nil
}

// flagsFor names the flags behind the v2 controllers, or --cgroup when there are none.
func flagsFor(l Limits, ctrls []string) string {
	var flags []string
	for _, c := range l.controllers() {
		if slices.Contains(ctrls, c[0]) {
			flags = append(flags, c[1])
		}
	}
	if len(flags) == 0 {
		return "--cgroup"
	}
	return strings.Join(flags, ", ")
}

// enable turns the controllers on in dir's cgroup.subtree_control, first moving the processes in dir into its
// leaf child.
func enable(dir string, ctrls []string) error {
	cur, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	var add []string
	for _, c := range ctrls {
		if !slices.Contains(strings.Fields(string(cur)), c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	write := func() error {
		return os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0)
	}
	// A group that holds processes is emptied first. The kernel refuses it a domain controller (memory: EBUSY) but
	// accepts a threaded one (cpu, pids) and makes the group a thread root, below which no group can take a
	// controller any more (EOPNOTSUPP): --pids alone in a systemd scope would fail that way.
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(procs))) > 0 {
		if err := evacuate(dir); err != nil {
			return err
		}
	}
	err = write()
	if !errors.Is(err, unix.EBUSY) {
		return err
	}
	if err := evacuate(dir); err != nil { // a process forked into dir meanwhile
		return err
	}
	return write()
}

// evacuate moves every process of dir into dir/LeafName. New processes may be forked into dir while it runs, so
// it makes a few passes.
func evacuate(dir string) error {
	leaf := filepath.Join(dir, LeafName)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cannot move the processes of %s aside: %v", dir, err)
	}
	for range 10 {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return err
		}
		pids := strings.Fields(string(b))
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(p), 0)
			if err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cannot move process %s from %s to %s: %v", p, dir, leaf, err)
			}
		}
	}
	return fmt.Errorf("processes keep appearing in %s; cannot move them aside", dir)
}

// writeV2 writes the limits of the v2 controllers into the group dir.
func writeV2(dir string, l Limits, ctrls []string) error {
	var files [][3]string // file, value, flag
	if slices.Contains(ctrls, "memory") && l.Memory > 0 {
		files = append(files, [3]string{"memory.max", strconv.FormatInt(l.Memory, 10), "--memory"})
		if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
			files = append(files, [3]string{"memory.swap.max", "0", "--memory"})
		}
	}
	if slices.Contains(ctrls, "pids") && l.Pids > 0 {
		files = append(files, [3]string{"pids.max", strconv.FormatInt(l.Pids, 10), "--pids"})
	}
	if slices.Contains(ctrls, "cpu") && l.CPUs > 0 {
		files = append(files, [3]string{"cpu.max", fmt.Sprintf("%d %d", CPUQuota(l.CPUs), CPUPeriod), "--cpus"})
	}
	return writeAll(dir, files)
}

// writeV1 writes the limits of the v1 hierarchy's controllers into the group dir.
func writeV1(dir string, l Limits, ctrls []string) error {
	var files [][3]string
	if slices.Contains(ctrls, "memory") && l.Memory > 0 {
		files = append(files, [3]string{"memory.limit_in_bytes", strconv.FormatInt(l.Memory, 10), "--memory"})
		if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil {
			files = append(files, [3]string{"memory.memsw.limit_in_bytes", strconv.FormatInt(l.Memory, 10), "--memory"})
		}
	}
	if slices.Contains(ctrls, "pids") && l.Pids > 0 {
		files = append(files, [3]string{"pids.max", strconv.FormatInt(l.Pids, 10), "--pids"})
	}
	if slices.Contains(ctrls, "cpu") && l.CPUs > 0 {
		files = append(files, [3]string{"cpu.cfs_period_us", strconv.Itoa(CPUPeriod), "--cpus"},
			[3]string{"cpu.cfs_quota_us", strconv.FormatInt(CPUQuota(l.CPUs), 10), "--cpus"})
	}
	return writeAll(dir, files)
}

func writeAll(dir string, files [][3]string) error {
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0); err != nil {
			return fmt.Errorf("%s: cannot write %s to %s: %v", f[2], f[1], filepath.Join(dir, f[0]), err)
		}
	}
	return nil
}

// CPUQuota is the cpu.max quota (µs per CPUPeriod) for cpus CPUs; the kernel's minimum is 1000 µs.
func CPUQuota(cpus float64) int64 {
	return max(int64(math.Round(cpus*CPUPeriod)), 1000)
}

// FD returns the descriptor of the v2 group's InnerName child, for CLONE_INTO_CGROUP, or -1 when there is no v2 group.
func (g *Group) FD() int {
	if g == nil || g.fd == nil {
		return -1
	}
	return int(g.fd.Fd())
}

// HasV1 reports whether the group uses cgroup v1 hierarchies: init is moved into them after it is cloned, so its
// cgroup namespace must be made anew once it is there (see Enter).
func (g *Group) HasV1() bool { return g != nil && len(g.v1) > 0 }

// Enter moves process pid (init, before it runs anything) into the v1 groups' InnerName children; the v2 one got
// it at clone time. Init must then unshare its cgroup namespace, which was rooted where it was cloned.
func (g *Group) Enter(pid int) error {
	if g == nil {
		return nil
	}
	for _, dir := range g.v1 {
		inner := filepath.Join(dir, InnerName)
		if err := os.WriteFile(filepath.Join(inner, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("cannot move the sandbox into %s: %v", inner, err)
		}
	}
	return nil
}

// Destroy kills whatever is left in the groups and removes them. It waits up to a second per group for the
// kernel to let go of exiting processes.
func (g *Group) Destroy() error {
	if g == nil {
		return nil
	}
	if g.fd != nil {
		g.fd.Close()
		g.fd = nil
	}
	var errs []error
	for _, dir := range append([]string{g.v2}, g.v1...) {
		if dir == "" {
			continue
		}
		if err := remove(dir); err != nil {
			errs = append(errs, err)
		}
	}
	g.v2, g.v1 = "", nil
	return errors.Join(errs...)
}

// remove empties and removes one group and its InnerName child.
func remove(dir string) error {
	if err := removeOne(filepath.Join(dir, InnerName)); err != nil {
		return err
	}
	return removeOne(dir)
}

// removeOne empties and removes one directory of a group.
func removeOne(dir string) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("cannot remove cgroup %s: %v", dir, err)
		}
		kill(dir)
		time.Sleep(5 * time.Millisecond)
	}
}

// kill sends SIGKILL to every process of the group (cgroup.kill where the kernel has it).
func kill(dir string) {
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, p := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(p); err == nil && pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// GroupName is the group name of the caisson process pid that started at startTime (field 22 of /proc/PID/stat).
func GroupName(pid int, startTime uint64) string {
	return fmt.Sprintf("%s%d-%d", GroupPrefix, pid, startTime)
}

// ownerOf parses a group name made by GroupName.
func ownerOf(name string) (pid int, startTime uint64, ok bool) {
	rest, ok := strings.CutPrefix(name, GroupPrefix)
	if !ok {
		return 0, 0, false
	}
	p, s, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(p)
	startTime, err2 := strconv.ParseUint(s, 10, 64)
	return pid, startTime, err1 == nil && err2 == nil && pid > 0
}

// Sweep removes the groups in dir whose owning caisson process is gone (it was killed before it could remove
// them). A group that still holds processes is left alone.
func Sweep(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, st, ok := ownerOf(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		if proc.Alive(pid, st) {
			continue // the owner is alive (an owner that is a zombie is not: it will never remove the group)
		}
		_ = unix.Rmdir(filepath.Join(dir, e.Name(), InnerName))
		_ = unix.Rmdir(filepath.Join(dir, e.Name()))
	}
}
