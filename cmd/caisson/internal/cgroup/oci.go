package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Container is an OCI container's cgroups (cgroupfs driver): a group at the same path in every mounted hierarchy,
// as runc's cgroupfs manager makes them. On a unified host that is one cgroup v2 group; on a v1 or hybrid host one
// group per v1 hierarchy (the named ones included) and one in the unified hierarchy when it is mounted.
type Container struct {
	// Path is the config's cgroupsPath as resolved: absolute, from each hierarchy's root.
	Path string
	// Dirs maps each hierarchy's mount point to the container's group directory in it.
	Dirs map[string]string
	// Unified is the mount point of the cgroup v2 hierarchy ("" when none); V2Only is set when it is the only one.
	Unified string
	V2Only  bool
	// controllers maps each v1 mount point to its controllers.
	controllers map[string][]string
}

// hierarchy is one mounted cgroup hierarchy.
type hierarchy struct {
	mountpoint  string
	root        string   // the mount's root within the hierarchy
	controllers []string // v1: its controllers and name=X; empty for cgroup2
	v2          bool
}

// hierarchies lists the mounted cgroup hierarchies, each once.
func hierarchies() ([]hierarchy, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	var out []hierarchy
	seen := map[string]bool{}
	for _, m := range mounts {
		h := hierarchy{mountpoint: m.Mountpoint, root: m.Root, v2: m.FSType == "cgroup2"}
		key := "cgroup2"
		if !h.v2 {
			for _, o := range strings.Split(m.VFSOptions, ",") {
				if knownV1(o) {
					h.controllers = append(h.controllers, o)
				}
			}
			if len(h.controllers) == 0 {
				continue
			}
			key = strings.Join(h.controllers, ",")
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, h)
	}
	return out, nil
}

// knownV1 reports whether a cgroup v1 mount option names a controller or a named hierarchy.
func knownV1(o string) bool {
	if strings.HasPrefix(o, "name=") {
		return true
	}
	switch o {
	case "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio", "blkio", "perf_event",
		"hugetlb", "pids", "rdma", "misc":
		return true
	}
	return false
}

// selfGroups maps each hierarchy key (its controllers joined by ",", or "" for cgroup v2) to the caller's group.
func selfGroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		out[parts[1]] = parts[2]
	}
	return out, nil
}

// PlanContainer resolves cgroupsPath for every mounted hierarchy: an absolute path is taken from the hierarchy's
// root (as far as this mount namespace shows it), a relative one below the caller's own group in it.
func PlanContainer(cgroupsPath string) (*Container, error) {
	hs, err := hierarchies()
	if err != nil {
		return nil, fmt.Errorf("cgroups: read the mount table: %w", err)
	}
	if len(hs) == 0 {
		return nil, errors.New("cgroups: no cgroup hierarchy is mounted")
	}
	self, err := selfGroups()
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	c := &Container{Dirs: map[string]string{}, controllers: map[string][]string{}, V2Only: true}
	abs := filepath.IsAbs(cgroupsPath)
	c.Path = filepath.Clean("/" + cgroupsPath)
	for _, h := range hs {
		rel := c.Path
		if !abs {
			key := ""
			if !h.v2 {
				key = strings.Join(h.controllers, ",")
			}
			own, ok := self[key]
			if !ok && !h.v2 {
				// /proc/self/cgroup lists co-mounted controllers in the kernel's order, which may differ.
				for k, v := range self {
					if sameSet(strings.Split(k, ","), h.controllers) {
						own, ok = v, true
					}
				}
			}
			if !ok {
				continue
			}
			// The caller's group as the mount shows it.
			if h.root != "/" {
				own = strings.TrimPrefix(own, h.root)
			}
			rel = filepath.Join("/", own, cgroupsPath)
		}
		dir := filepath.Join(h.mountpoint, rel)
		c.Dirs[h.mountpoint] = dir
		if h.v2 {
			c.Unified = h.mountpoint
		} else {
			c.V2Only = false
			c.controllers[h.mountpoint] = h.controllers
		}
	}
	if c.Unified == "" {
		c.V2Only = false
	}
	return c, nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Rel returns the container's group in the hierarchy at mountpoint, relative to that mount point.
func (c *Container) Rel(mountpoint string) string {
	return strings.TrimPrefix(c.Dirs[mountpoint], mountpoint)
}

// dir returns the group directory of the hierarchy holding controller ("" when none has it).
func (c *Container) dir(controller string) string {
	for mp, ctrls := range c.controllers {
		if slices.Contains(ctrls, controller) {
			return c.Dirs[mp]
		}
	}
	if c.V2Only {
		return c.Dirs[c.Unified]
	}
	return ""
}

// Create makes the groups (their missing parents too) and applies res. With ignorePerm (a rootless runtime without
// limits), hierarchies the caller may not write are left out instead of failing.
func (c *Container) Create(res *specs.LinuxResources, ignorePerm bool) error {
	for mp, dir := range c.Dirs {
		if err := mkdirGroup(mp, dir, c.controllers[mp]); err != nil {
			if ignorePerm && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)) {
				delete(c.Dirs, mp)
				continue
			}
			return err
		}
	}
	if c.Unified != "" && c.Dirs[c.Unified] != "" && c.V2Only {
		if err := enableControllers(c.Unified, c.Dirs[c.Unified]); err != nil && !ignorePerm {
			return err
		}
	}
	return c.Apply(res)
}

// mkdirGroup creates dir and its missing parents below mp; cpuset groups get their parent's cpus and mems, which
// a new v1 cpuset group lacks (no task could join it otherwise).
func mkdirGroup(mp, dir string, controllers []string) error {
	rel, err := filepath.Rel(mp, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("cgroups: %s is not below %s", dir, mp)
	}
	cur := mp
	for _, part := range strings.Split(rel, "/") {
		if part == "." || part == "" {
			continue
		}
		parent := cur
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return fmt.Errorf("cgroups: create %s: %w", cur, unwrapPathErr(err))
		}
		if slices.Contains(controllers, "cpuset") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					_ = os.WriteFile(filepath.Join(cur, f), b, 0)
				}
			}
		}
	}
	return nil
}

// enableControllers enables, in every group from the unified hierarchy's root down to dir's parent, the controllers
// each offers, so that dir can take limits.
func enableControllers(mp, dir string) error {
	rel, _ := filepath.Rel(mp, filepath.Dir(dir))
	cur := mp
	parts := []string{"."}
	if rel != "." {
		parts = append(parts, strings.Split(rel, "/")...)
	}
	for _, part := range parts {
		cur = filepath.Join(cur, part)
		b, err := os.ReadFile(filepath.Join(cur, "cgroup.controllers"))
		if err != nil {
			return fmt.Errorf("cgroups: %w", unwrapPathErr(err))
		}
		var add []string
		for _, ctrl := range strings.Fields(string(b)) {
			add = append(add, "+"+ctrl)
		}
		if len(add) == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(cur, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0); err != nil {
			return fmt.Errorf("cgroups: enable controllers in %s: %w", cur, unwrapPathErr(err))
		}
	}
	return nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// write writes value to dir/file, naming the file and the config field in an error.
func write(dir, file, value, field string) error {
	if dir == "" {
		return fmt.Errorf("linux.resources.%s: no cgroup hierarchy offers %s here", field, strings.Split(file, ".")[0])
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("linux.resources.%s: write %s: %w", field, filepath.Join(dir, file), unwrapPathErr(err))
	}
	return nil
}

// Apply writes res into the groups (create and update).
func (c *Container) Apply(res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	if c.V2Only {
		return c.applyV2(res)
	}
	return c.applyV1(res)
}

func i64(v int64) string  { return strconv.FormatInt(v, 10) }
func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func (c *Container) applyV1(res *specs.LinuxResources) error {
	if m := res.Memory; m != nil {
		dir := c.dir("memory")
		// The swap limit (memory+swap) must stay above the memory limit at every step: raise it first when the
		// memory limit rises, after when it falls.
		if m.Swap != nil && m.Limit != nil && *m.Swap != -1 {
			_ = write(dir, "memory.memsw.limit_in_bytes", i64(*m.Swap), "memory.swap")
		}
		if m.Limit != nil {
			if err := write(dir, "memory.limit_in_bytes", i64(*m.Limit), "memory.limit"); err != nil {
				return err
			}
		}
		if m.Swap != nil {
			if err := write(dir, "memory.memsw.limit_in_bytes", i64(*m.Swap), "memory.swap"); err != nil {
				return err
			}
		}
		if m.Reservation != nil {
			if err := write(dir, "memory.soft_limit_in_bytes", i64(*m.Reservation), "memory.reservation"); err != nil {
				return err
			}
		}
		if m.Kernel != nil || m.KernelTCP != nil {
			// Kernel memory limits went away with Linux 6.x (writes fail); runc ignores them too.
			if m.Kernel != nil {
				_ = write(dir, "memory.kmem.limit_in_bytes", i64(*m.Kernel), "memory.kernel")
			}
			if m.KernelTCP != nil {
				_ = write(dir, "memory.kmem.tcp.limit_in_bytes", i64(*m.KernelTCP), "memory.kernelTCP")
			}
		}
		if m.Swappiness != nil {
			if err := write(dir, "memory.swappiness", u64(*m.Swappiness), "memory.swappiness"); err != nil {
				return err
			}
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			if err := write(dir, "memory.oom_control", "1", "memory.disableOOMKiller"); err != nil {
				return err
			}
		}
	}
	if cpu := res.CPU; cpu != nil {
		dir := c.dir("cpu")
		if cpu.Shares != nil {
			if err := write(dir, "cpu.shares", u64(*cpu.Shares), "cpu.shares"); err != nil {
				return err
			}
		}
		if cpu.Period != nil {
			if err := write(dir, "cpu.cfs_period_us", u64(*cpu.Period), "cpu.period"); err != nil {
				return err
			}
		}
		if cpu.Quota != nil {
			if err := write(dir, "cpu.cfs_quota_us", i64(*cpu.Quota), "cpu.quota"); err != nil {
				return err
			}
		}
		if cpu.Burst != nil {
			if err := write(dir, "cpu.cfs_burst_us", u64(*cpu.Burst), "cpu.burst"); err != nil {
				return err
			}
		}
		if cpu.RealtimePeriod != nil {
			if err := write(dir, "cpu.rt_period_us", u64(*cpu.RealtimePeriod), "cpu.realtimePeriod"); err != nil {
				return err
			}
		}
		if cpu.RealtimeRuntime != nil {
			if err := write(dir, "cpu.rt_runtime_us", i64(*cpu.RealtimeRuntime), "cpu.realtimeRuntime"); err != nil {
				return err
			}
		}
		if cpu.Idle != nil {
			if err := write(dir, "cpu.idle", i64(*cpu.Idle), "cpu.idle"); err != nil {
				return err
			}
		}
		if cpu.Cpus != "" {
			if err := write(c.dir("cpuset"), "cpuset.cpus", cpu.Cpus, "cpu.cpus"); err != nil {
				return err
			}
		}
		if cpu.Mems != "" {
			if err := write(c.dir("cpuset"), "cpuset.mems", cpu.Mems, "cpu.mems"); err != nil {
				return err
			}
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil {
		v := "max"
		if *p.Limit > 0 {
			v = i64(*p.Limit)
		}
		if err := write(c.dir("pids"), "pids.max", v, "pids.limit"); err != nil {
			return err
		}
	}
	if b := res.BlockIO; b != nil {
		dir := c.dir("blkio")
		// A weight of 0 means unset (Docker sends one): runc writes none either.
		if b.Weight != nil && *b.Weight > 0 {
			if err := writeFirst(dir, []string{"blkio.weight", "blkio.bfq.weight"}, strconv.Itoa(int(*b.Weight)), "blockIO.weight"); err != nil {
				return err
			}
		}
		if b.LeafWeight != nil && *b.LeafWeight > 0 {
			if err := write(dir, "blkio.leaf_weight", strconv.Itoa(int(*b.LeafWeight)), "blockIO.leafWeight"); err != nil {
				return err
			}
		}
		for _, d := range b.WeightDevice {
			if d.Weight != nil {
				v := fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.Weight)
				if err := writeFirst(dir, []string{"blkio.weight_device", "blkio.bfq.weight_device"}, v, "blockIO.weightDevice"); err != nil {
					return err
				}
			}
			if d.LeafWeight != nil {
				v := fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.LeafWeight)
				if err := write(dir, "blkio.leaf_weight_device", v, "blockIO.weightDevice"); err != nil {
					return err
				}
			}
		}
		for _, t := range []struct {
			file, field string
			devs        []specs.LinuxThrottleDevice
		}{{"blkio.throttle.read_bps_device", "throttleReadBpsDevice", b.ThrottleReadBpsDevice},
			{"blkio.throttle.write_bps_device", "throttleWriteBpsDevice", b.ThrottleWriteBpsDevice},
			{"blkio.throttle.read_iops_device", "throttleReadIOPSDevice", b.ThrottleReadIOPSDevice},
			{"blkio.throttle.write_iops_device", "throttleWriteIOPSDevice", b.ThrottleWriteIOPSDevice}} {
			for _, d := range t.devs {
				if err := write(dir, t.file, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, d.Rate), "blockIO."+t.field); err != nil {
					return err
				}
			}
		}
	}
	for _, h := range res.HugepageLimits {
		if err := write(c.dir("hugetlb"), "hugetlb."+h.Pagesize+".limit_in_bytes", u64(h.Limit), "hugepageLimits"); err != nil {
			return err
		}
	}
	if n := res.Network; n != nil {
		if n.ClassID != nil {
			if err := write(c.dir("net_cls"), "net_cls.classid", strconv.FormatUint(uint64(*n.ClassID), 10), "network.classID"); err != nil {
				return err
			}
		}
		for _, p := range n.Priorities {
			if err := write(c.dir("net_prio"), "net_prio.ifpriomap", fmt.Sprintf("%s %d", p.Name, p.Priority), "network.priorities"); err != nil {
				return err
			}
		}
	}
	if len(res.Devices) > 0 {
		if dir := c.dir("devices"); dir != "" {
			if err := applyDevicesV1(dir, res.Devices); err != nil {
				return err
			}
		}
	}
	if len(res.Unified) > 0 {
		if c.Unified == "" {
			return errors.New("linux.resources.unified: no cgroup v2 hierarchy is mounted")
		}
		if err := c.writeUnified(res.Unified); err != nil {
			return err
		}
	}
	if len(res.Rdma) > 0 {
		dir := c.dir("rdma")
		for dev, r := range res.Rdma {
			var parts []string
			if r.HcaHandles != nil {
				parts = append(parts, fmt.Sprintf("hca_handle=%d", *r.HcaHandles))
			}
			if r.HcaObjects != nil {
				parts = append(parts, fmt.Sprintf("hca_object=%d", *r.HcaObjects))
			}
			if err := write(dir, "rdma.max", dev+" "+strings.Join(parts, " "), "rdma"); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFirst writes value to the first of files that exists in dir.
func writeFirst(dir string, files []string, value, field string) error {
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return write(dir, f, value, field)
		}
	}
	return write(dir, files[0], value, field)
}

// devRule renders one device rule as the v1 devices controller takes it: "c 1:3 rwm", "a *:* rwm".
func devRule(d specs.LinuxDeviceCgroup) string {
	typ := d.Type
	if typ == "" {
		typ = "a"
	}
	num := func(p *int64) string {
		if p == nil || *p < 0 {
			return "*"
		}
		return i64(*p)
	}
	access := d.Access
	if access == "" {
		access = "rwm"
	}
	return fmt.Sprintf("%s %s:%s %s", typ, num(d.Major), num(d.Minor), access)
}

// applyDevicesV1 writes the device rules in order (the last matching rule decides, as the spec says): each allow
// or deny goes to devices.allow or devices.deny.
func applyDevicesV1(dir string, rules []specs.LinuxDeviceCgroup) error {
	for i, r := range rules {
		file := "devices.deny"
		if r.Allow {
			file = "devices.allow"
		}
		if err := write(dir, file, devRule(r), fmt.Sprintf("devices[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

// writeUnified writes linux.resources.unified: each key is a file of the container's v2 group.
func (c *Container) writeUnified(u map[string]string) error {
	keys := make([]string, 0, len(u))
	for k := range u {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.Contains(k, "/") || !strings.Contains(k, ".") {
			return fmt.Errorf("linux.resources.unified.%s: not a cgroup v2 file name", k)
		}
		if err := write(c.Dirs[c.Unified], k, u[k], "unified."+k); err != nil {
			return err
		}
	}
	return nil
}

func (c *Container) applyV2(res *specs.LinuxResources) error {
	dir := c.Dirs[c.Unified]
	if m := res.Memory; m != nil {
		if m.Limit != nil {
			v := "max"
			if *m.Limit > 0 {
				v = i64(*m.Limit)
			}
			if err := write(dir, "memory.max", v, "memory.limit"); err != nil {
				return err
			}
		}
		if m.Reservation != nil {
			if err := write(dir, "memory.low", i64(*m.Reservation), "memory.reservation"); err != nil {
				return err
			}
		}
		if m.Swap != nil {
			v := "max"
			if *m.Swap > 0 {
				lim := int64(0)
				if m.Limit != nil && *m.Limit > 0 {
					lim = *m.Limit
				}
				v = i64(*m.Swap - lim) // v1's memory+swap to v2's swap alone
			}
			if err := write(dir, "memory.swap.max", v, "memory.swap"); err != nil {
				return err
			}
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			return errors.New("linux.resources.memory.disableOOMKiller: cgroup v2 has no such switch")
		}
	}
	if cpu := res.CPU; cpu != nil {
		if cpu.Shares != nil && *cpu.Shares > 0 {
			weight := 1 + ((*cpu.Shares-2)*9999)/262142 // runc's conversion of shares to weight
			if err := write(dir, "cpu.weight", u64(weight), "cpu.shares"); err != nil {
				return err
			}
		}
		if cpu.Quota != nil || cpu.Period != nil {
			quota, period := "max", uint64(CPUPeriod)
			if cpu.Quota != nil && *cpu.Quota > 0 {
				quota = i64(*cpu.Quota)
			}
			if cpu.Period != nil && *cpu.Period > 0 {
				period = *cpu.Period
			}
			if err := write(dir, "cpu.max", quota+" "+u64(period), "cpu.quota"); err != nil {
				return err
			}
		}
		if cpu.Cpus != "" {
			if err := write(dir, "cpuset.cpus", cpu.Cpus, "cpu.cpus"); err != nil {
				return err
			}
		}
		if cpu.Mems != "" {
			if err := write(dir, "cpuset.mems", cpu.Mems, "cpu.mems"); err != nil {
				return err
			}
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil {
		v := "max"
		if *p.Limit > 0 {
			v = i64(*p.Limit)
		}
		if err := write(dir, "pids.max", v, "pids.limit"); err != nil {
			return err
		}
	}
	for _, h := range res.HugepageLimits {
		if err := write(dir, "hugetlb."+h.Pagesize+".max", u64(h.Limit), "hugepageLimits"); err != nil {
			return err
		}
	}
	if b := res.BlockIO; b != nil && b.Weight != nil && *b.Weight > 0 {
		if err := write(dir, "io.weight", strconv.Itoa(int(*b.Weight)), "blockIO.weight"); err != nil {
			return err
		}
	}
	if len(res.Unified) > 0 {
		return c.writeUnified(res.Unified)
	}
	return nil
}

// Enter moves pid into every group.
func (c *Container) Enter(pid int) error {
	for mp, dir := range c.Dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("cgroups: enter %s (%s): %w", dir, mp, unwrapPathErr(err))
		}
	}
	return nil
}

// Procs returns the PIDs in the container's groups (the union over the hierarchies).
func (c *Container) Procs() ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for _, dir := range c.Dirs {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Ints(out)
	return out, nil
}

// Freeze freezes (or thaws) the container's processes: the v1 freezer or cgroup.freeze.
func (c *Container) Freeze(frozen bool) error {
	if c.V2Only || (c.dir("freezer") == "" && c.Unified != "") {
		v := "0"
		if frozen {
			v = "1"
		}
		return write(c.Dirs[c.Unified], "cgroup.freeze", v, "freezer")
	}
	dir := c.dir("freezer")
	if dir == "" {
		return errors.New("no freezer cgroup: pause needs the freezer controller")
	}
	v := "THAWED"
	if frozen {
		v = "FROZEN"
	}
	if err := write(dir, "freezer.state", v, "freezer"); err != nil {
		return err
	}
	for i := 0; i < 1000; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
		if err != nil || strings.TrimSpace(string(b)) == v {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("freezer: %s did not become %s", dir, v)
}

// Frozen reports whether the container is frozen.
func (c *Container) Frozen() bool {
	if dir := c.dir("freezer"); dir != "" && !c.V2Only {
		b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
		return err == nil && strings.TrimSpace(string(b)) == "FROZEN"
	}
	if c.Unified != "" {
		b, err := os.ReadFile(filepath.Join(c.Dirs[c.Unified], "cgroup.freeze"))
		return err == nil && strings.TrimSpace(string(b)) == "1"
	}
	return false
}

// Destroy kills what is left in the groups and removes them (children first). Parents made by Create are left:
// other containers may share them, as runc leaves them.
func (c *Container) Destroy() error {
	var errs []error
	for _, dir := range c.Dirs {
		if err := removeOne(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ContainerFrom rebuilds a Container from what an earlier PlanContainer and Create resolved (a runtime's state
// record): the groups by mount point, the unified mount point, and whether the host is unified only. The
// controllers of each v1 hierarchy are read from the mount table again.
func ContainerFrom(path string, dirs map[string]string, unified string, v2only bool) *Container {
	c := &Container{Path: path, Dirs: dirs, Unified: unified, V2Only: v2only, controllers: map[string][]string{}}
	if hs, err := hierarchies(); err == nil {
		for _, h := range hs {
			if _, ok := dirs[h.mountpoint]; ok && !h.v2 {
				c.controllers[h.mountpoint] = h.controllers
			}
		}
	}
	return c
}
