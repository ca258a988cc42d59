package ocispec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/seccomp"
	"golang.org/x/sys/unix"
)

// FieldError is a config.json value caisson-oci cannot accept: Field is its JSON path.
type FieldError struct {
	Field string
	Msg   string
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Field == "" {
		return "config.json: " + e.Msg
	}
	return "config.json: " + e.Field + ": " + e.Msg
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Options are the runtime's command-line choices that shape the plan.
type Options struct {
	// NoPivot is create --no-pivot.
	NoPivot bool
	// Rootless is true when the runtime has no privileges on the host (an ordinary user, or root of a user
	// namespace that is not the initial one): devices are bound from the host rather than created.
	Rootless bool
	// AppArmor reports whether the host enforces AppArmor (a profile can be applied).
	AppArmor bool
	// LastCap is the highest capability number the kernel knows.
	LastCap int
}

// ReadSpec reads bundle/config.json, strictly: it must be one JSON object with a supported ociVersion.
func ReadSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("bundle %s: config.json: %w", bundle, pe.Err)
		}
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	var s specs.Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&s); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
			return nil, fmt.Errorf("config.json:%d: not valid JSON: %v", line, err)
		case errors.As(err, &te):
			return nil, fieldErr(te.Field, "cannot use JSON %s as %s", te.Value, te.Type)
		}
		return nil, fmt.Errorf("config.json: %v", err)
	}
	if dec.More() {
		return nil, fieldErr("", "trailing data after the JSON object")
	}
	if err := checkVersion(s.Version); err != nil {
		return nil, err
	}
	return &s, nil
}

// checkVersion accepts ociVersion 1.x.y (with a pre-release suffix such as -dev or -rc.1).
func checkVersion(v string) error {
	if v == "" {
		return fieldErr("ociVersion", "missing")
	}
	core, _, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return fieldErr("ociVersion", "%q is not a semantic version", v)
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return fieldErr("ociVersion", "%q is not a semantic version", v)
		}
	}
	if parts[0] != "1" {
		return fieldErr("ociVersion", "major version %s is not supported (caisson-oci implements the runtime spec %s)", parts[0], specs.Version)
	}
	return nil
}

// namespaceFlags maps config.json's namespace types to CLONE_NEW* flags.
var namespaceFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.PIDNamespace: unix.CLONE_NEWPID, specs.NetworkNamespace: unix.CLONE_NEWNET, specs.MountNamespace: unix.CLONE_NEWNS,
	specs.IPCNamespace: unix.CLONE_NEWIPC, specs.UTSNamespace: unix.CLONE_NEWUTS, specs.UserNamespace: unix.CLONE_NEWUSER,
	specs.CgroupNamespace: unix.CLONE_NEWCGROUP, specs.TimeNamespace: unix.CLONE_NEWTIME,
}

// NamespaceFlag returns the CLONE_NEW* flag of a config.json namespace type.
func NamespaceFlag(t specs.LinuxNamespaceType) (uintptr, bool) {
	f, ok := namespaceFlags[t]
	return f, ok
}

// NamespaceFile is the name of each namespace type's file under /proc/PID/ns.
var NamespaceFile = map[uintptr]string{
	unix.CLONE_NEWPID: "pid", unix.CLONE_NEWNET: "net", unix.CLONE_NEWNS: "mnt", unix.CLONE_NEWIPC: "ipc",
	unix.CLONE_NEWUTS: "uts", unix.CLONE_NEWUSER: "user", unix.CLONE_NEWCGROUP: "cgroup", unix.CLONE_NEWTIME: "time",
}

// Load validates spec (read from bundle) and makes the plan. id is the container's ID.
func Load(s *specs.Spec, bundle, id string, o Options) (*Plan, error) {
	p := &Plan{ID: id, Bundle: bundle, NoPivot: o.NoPivot, Personality: -1}
	if s.Root == nil || s.Root.Path == "" {
		return nil, fieldErr("root.path", "missing")
	}
	p.Root = s.Root.Path
	if !filepath.IsAbs(p.Root) {
		p.Root = filepath.Join(bundle, p.Root)
	}
	p.Root = filepath.Clean(p.Root)
	if st, err := os.Stat(p.Root); err != nil {
		return nil, fieldErr("root.path", "%v", unwrap(err))
	} else if !st.IsDir() {
		return nil, fieldErr("root.path", "%s is not a directory", p.Root)
	}
	p.RootReadonly = s.Root.Readonly
	if s.Process == nil {
		return nil, fieldErr("process", "missing (the container needs a process to run)")
	}
	if s.Linux == nil {
		return nil, fieldErr("linux", "missing (caisson-oci runs Linux containers)")
	}
	if err := loadNamespaces(s, p); err != nil {
		return nil, err
	}
	if err := loadProcess(s.Process, s.Linux, "process", o, &p.Process); err != nil {
		return nil, err
	}
	if err := loadMounts(s, p, o); err != nil {
		return nil, err
	}
	if err := loadLinux(s, p, o); err != nil {
		return nil, err
	}
	if s.Hooks != nil {
		for field, hs := range map[string][]specs.Hook{
			"hooks.prestart": s.Hooks.Prestart, "hooks.createRuntime": s.Hooks.CreateRuntime,
			"hooks.createContainer": s.Hooks.CreateContainer, "hooks.startContainer": s.Hooks.StartContainer,
			"hooks.poststart": s.Hooks.Poststart, "hooks.poststop": s.Hooks.Poststop,
		} {
			if err := checkHooks(field, hs); err != nil {
				return nil, err
			}
		}
		p.Hooks = Hooks{CreateContainer: s.Hooks.CreateContainer, StartContainer: s.Hooks.StartContainer}
	}
	return p, nil
}

// checkHooks checks hooks' paths and timeouts.
func checkHooks(field string, hs []specs.Hook) error {
	for i, h := range hs {
		if !path.IsAbs(h.Path) {
			return fieldErr(fmt.Sprintf("%s[%d].path", field, i), "%q must be an absolute path", h.Path)
		}
		if h.Timeout != nil && *h.Timeout <= 0 {
			return fieldErr(fmt.Sprintf("%s[%d].timeout", field, i), "must be positive, not %d", *h.Timeout)
		}
	}
	return nil
}

func loadNamespaces(s *specs.Spec, p *Plan) error {
	seen := map[specs.LinuxNamespaceType]bool{}
	for i, ns := range s.Linux.Namespaces {
		field := fmt.Sprintf("linux.namespaces[%d]", i)
		flag, ok := namespaceFlags[ns.Type]
		if !ok {
			return fieldErr(field+".type", "unknown namespace type %q", ns.Type)
		}
		if seen[ns.Type] {
			return fieldErr(field+".type", "namespace type %q listed twice", ns.Type)
		}
		seen[ns.Type] = true
		p.NS.Own |= flag
		if ns.Path == "" {
			p.NS.New |= flag
			continue
		}
		if !filepath.IsAbs(ns.Path) {
			return fieldErr(field+".path", "%q must be an absolute path", ns.Path)
		}
		p.NS.Join = append(p.NS.Join, NSPath{Type: int(flag), Name: string(ns.Type), Path: ns.Path})
	}
	l := s.Linux
	hasMaps := len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0
	switch {
	case p.NS.New&unix.CLONE_NEWUSER != 0:
		if len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0 {
			return fieldErr("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
		}
	case hasMaps && p.NS.Own&unix.CLONE_NEWUSER != 0:
		// A joined user namespace: its maps are what they are; the spec's are accepted only as documentation, as
		// runc accepts them when they match (the joined namespace is checked against them by the runtime).
	case hasMaps:
		return fieldErr("linux.uidMappings", "mappings given without a user namespace (add {\"type\": \"user\"} to linux.namespaces)")
	}
	for i, m := range l.UIDMappings {
		if m.Size == 0 {
			return fieldErr(fmt.Sprintf("linux.uidMappings[%d].size", i), "must not be 0")
		}
	}
	for i, m := range l.GIDMappings {
		if m.Size == 0 {
			return fieldErr(fmt.Sprintf("linux.gidMappings[%d].size", i), "must not be 0")
		}
	}
	p.NS.UIDMappings, p.NS.GIDMappings = l.UIDMappings, l.GIDMappings
	if len(l.TimeOffsets) > 0 {
		if p.NS.New&unix.CLONE_NEWTIME == 0 {
			return fieldErr("linux.timeOffsets", "offsets need a new time namespace ({\"type\": \"time\"} without a path)")
		}
		for k, v := range l.TimeOffsets {
			if k != "monotonic" && k != "boottime" {
				return fieldErr("linux.timeOffsets."+k, "unknown clock (want monotonic or boottime)")
			}
			if v.Nanosecs >= 1e9 {
				return fieldErr("linux.timeOffsets."+k+".nanosecs", "%d is not below 1000000000", v.Nanosecs)
			}
		}
		p.NS.TimeOffsets = l.TimeOffsets
	}
	return nil
}

// capSet turns capability names into a mask. A name that is no capability is an error (the spec: a value that
// cannot be mapped to the kernel's interface); a capability the running kernel does not have is left out and
// returned (it cannot be granted, which the spec says should not fail the container).
func capSet(field string, names []string, last int) (uint64, []string, error) {
	var m uint64
	var unknown []string
	for i, n := range names {
		_, c, err := config.ParseCap(n)
		if err != nil || c < 0 {
			return 0, nil, fieldErr(fmt.Sprintf("%s[%d]", field, i), "unknown capability %q", n)
		}
		if c > last || c > 63 {
			unknown = append(unknown, n)
			continue
		}
		m |= 1 << uint(c)
	}
	return m, unknown, nil
}

// rlimitTypes maps config.json's rlimit types to resources.
var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// ioprioClasses maps process.ioPriority classes to IOPRIO_CLASS_*.
var ioprioClasses = map[specs.IOPriorityClass]int{specs.IOPRIO_CLASS_RT: 1, specs.IOPRIO_CLASS_BE: 2, specs.IOPRIO_CLASS_IDLE: 3}

// LoadProcess validates a process object (config.json's, or one given to exec with --process) into pr; field names
// it in errors. The container's linux section gives its seccomp profile.
func LoadProcess(sp *specs.Process, l *specs.Linux, field string, o Options, pr *Process) error {
	return loadProcess(sp, l, field, o, pr)
}

func loadProcess(sp *specs.Process, l *specs.Linux, field string, o Options, pr *Process) error {
	if len(sp.Args) == 0 {
		return fieldErr(field+".args", "missing (the program to run)")
	}
	if sp.Args[0] == "" {
		return fieldErr(field+".args[0]", "empty")
	}
	if sp.Cwd == "" || !path.IsAbs(sp.Cwd) {
		return fieldErr(field+".cwd", "%q must be an absolute path", sp.Cwd)
	}
	for i, e := range sp.Env {
		if !strings.Contains(e, "=") {
			return fieldErr(fmt.Sprintf("%s.env[%d]", field, i), "%q is not KEY=VALUE", e)
		}
	}
	pr.Args, pr.Env, pr.Cwd = sp.Args, sp.Env, path.Clean(sp.Cwd)
	pr.UID, pr.GID, pr.AdditionalGids, pr.Umask = sp.User.UID, sp.User.GID, sp.User.AdditionalGids, sp.User.Umask
	pr.Terminal, pr.ConsoleSize = sp.Terminal, sp.ConsoleSize
	pr.NoNewPrivs = sp.NoNewPrivileges
	if c := sp.Capabilities; c != nil {
		var err error
		sets := []struct {
			name  string
			names []string
			dst   *uint64
		}{{"bounding", c.Bounding, &pr.Caps.Bounding}, {"effective", c.Effective, &pr.Caps.Effective},
			{"inheritable", c.Inheritable, &pr.Caps.Inheritable}, {"permitted", c.Permitted, &pr.Caps.Permitted},
			{"ambient", c.Ambient, &pr.Caps.Ambient}}
		for _, set := range sets {
			if *set.dst, _, err = capSet(field+".capabilities."+set.name, set.names, o.LastCap); err != nil {
				return err
			}
		}
	}
	seen := map[string]bool{}
	for i, rl := range sp.Rlimits {
		res, ok := rlimitTypes[rl.Type]
		f := fmt.Sprintf("%s.rlimits[%d]", field, i)
		if !ok {
			return fieldErr(f+".type", "unknown resource %q", rl.Type)
		}
		if seen[rl.Type] {
			return fieldErr(f+".type", "%s given twice", rl.Type)
		}
		seen[rl.Type] = true
		if rl.Soft > rl.Hard {
			return fieldErr(f, "soft limit %d is above the hard limit %d", rl.Soft, rl.Hard)
		}
		pr.Rlimits = append(pr.Rlimits, config.Rlimit{Name: rl.Type, Resource: res, Soft: rl.Soft, Hard: rl.Hard})
	}
	if sp.ApparmorProfile != "" {
		if !o.AppArmor {
			return fieldErr(field+".apparmorProfile", "profile %q given, but this host does not enforce AppArmor", sp.ApparmorProfile)
		}
		pr.ApparmorProfile = sp.ApparmorProfile
	}
	if sp.SelinuxLabel != "" {
		return fieldErr(field+".selinuxLabel", "SELinux is not supported by caisson-oci (this host does not enforce it)")
	}
	if sp.Scheduler != nil {
		return fieldErr(field+".scheduler", "not supported by caisson-oci")
	}
	if sp.ExecCPUAffinity != nil {
		return fieldErr(field+".execCPUAffinity", "not supported by caisson-oci")
	}
	if io := sp.IOPriority; io != nil {
		class, ok := ioprioClasses[io.Class]
		if !ok {
			return fieldErr(field+".ioPriority.class", "unknown class %q", io.Class)
		}
		if io.Priority < 0 || io.Priority > 7 {
			return fieldErr(field+".ioPriority.priority", "%d is not in 0..7", io.Priority)
		}
		pr.IOPriority = class<<13 | io.Priority
	}
	if l != nil && l.Seccomp != nil {
		data, err := json.Marshal(l.Seccomp)
		if err != nil {
			return fieldErr("linux.seccomp", "%v", err)
		}
		prog, err := seccomp.CompileOCI(data, "linux.seccomp")
		if err != nil {
			var pe *seccomp.ProfileError
			if errors.As(err, &pe) {
				f := "linux.seccomp"
				if pe.Field != "" {
					f += "." + pe.Field
				}
				return fieldErr(f, "%v", pe.Err)
			}
			return fieldErr("linux.seccomp", "%v", err)
		}
		if len(prog.Filter) > 0 {
			pr.Seccomp = &Filter{Insns: prog.Filter, Flags: prog.Flags}
		}
		pr.SeccompSource = "linux.seccomp"
	}
	return nil
}

// propagations maps rootfsPropagation values to mount flags.
var propagations = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

func loadMounts(s *specs.Spec, p *Plan, o Options) error {
	if !p.NS.Has(unix.CLONE_NEWNS) {
		// Without a mount namespace of its own the container's root and mounts would be made in the runtime's
		// namespace, the host's: refused rather than done (runc does them, and leaves them behind).
		return fieldErr("linux.namespaces", "the container has no mount namespace of its own (new or joined): add {\"type\": \"mount\"}")
	}
	for i, m := range s.Mounts {
		field := fmt.Sprintf("mounts[%d]", i)
		if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
			return fieldErr(field+".uidMappings", "idmapped mounts are not supported")
		}
		rm, err := rootfs.ParseMount(m.Type, m.Source, m.Destination, m.Options, p.Bundle)
		if err != nil {
			return fieldErr(field, "%v", err)
		}
		if rm.Type == "cgroup" || rm.Type == "cgroup2" {
			rm.Type = "cgroup" // the container's view of its cgroups, whatever the host's layout (CgroupMount)
		}
		if rm.Type == "sysfs" && !p.NS.Has(unix.CLONE_NEWNET) {
			// A new sysfs is refused outside the network namespace it would describe: runc binds the host's.
			rm = rootfs.Mount{Type: "bind", Source: "/sys", Destination: rm.Destination, Recursive: true,
				AttrSet: rm.AttrSet | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
		}
		if rm.Destination == "/dev" && rm.Type != "bind" {
			p.DefaultDevices = true
		}
		p.Mounts = append(p.Mounts, rm)
	}
	return nil
}

// sysctlNamespace says which namespace makes a sysctl the container's own (runc's rules).
func sysctlNamespace(key string) (uintptr, bool) {
	switch {
	case key == "kernel.msgmax", key == "kernel.msgmnb", key == "kernel.msgmni", key == "kernel.sem",
		key == "kernel.shmall", key == "kernel.shmmax", key == "kernel.shmmni", key == "kernel.shm_rmid_forced",
		strings.HasPrefix(key, "fs.mqueue."):
		return unix.CLONE_NEWIPC, true
	case strings.HasPrefix(key, "net."):
		return unix.CLONE_NEWNET, true
	case key == "kernel.domainname", key == "kernel.hostname":
		return unix.CLONE_NEWUTS, true
	}
	return 0, false
}

func loadLinux(s *specs.Spec, p *Plan, o Options) error {
	l := s.Linux
	if s.Hostname != "" {
		if !p.NS.Has(unix.CLONE_NEWUTS) {
			return fieldErr("hostname", "cannot be set without a UTS namespace of the container's own (add {\"type\": \"uts\"} to linux.namespaces)")
		}
		p.Hostname = s.Hostname
	}
	if s.Domainname != "" {
		if !p.NS.Has(unix.CLONE_NEWUTS) {
			return fieldErr("domainname", "cannot be set without a UTS namespace of the container's own")
		}
		p.Domainname = s.Domainname
	}
	keys := make([]string, 0, len(l.Sysctl))
	for k := range l.Sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ns, ok := sysctlNamespace(k)
		if !ok {
			return fieldErr("linux.sysctl."+k, "not a namespaced sysctl: setting it would change the host")
		}
		if !p.NS.Has(ns) {
			return fieldErr("linux.sysctl."+k, "needs a %s namespace of the container's own", NamespaceFile[ns])
		}
		if strings.Contains(k, "/") || strings.Contains(k, "..") {
			return fieldErr("linux.sysctl."+k, "invalid key")
		}
		p.Sysctl = append(p.Sysctl, [2]string{k, l.Sysctl[k]})
	}
	for i, d := range l.Devices {
		field := fmt.Sprintf("linux.devices[%d]", i)
		if !strings.HasPrefix(d.Path, "/dev/") || path.Clean(d.Path) != d.Path {
			return fieldErr(field+".path", "%q must be a clean path below /dev", d.Path)
		}
		if len(d.Type) != 1 || !strings.ContainsAny(d.Type, "cbup") {
			return fieldErr(field+".type", "%q is not one of c, b, u, p", d.Type)
		}
		if d.Type != "p" && (d.Major < 0 || d.Minor < 0) {
			return fieldErr(field, "major and minor numbers are required")
		}
		dev := rootfs.Device{Path: d.Path, Type: d.Type[0], Major: uint32(d.Major), Minor: uint32(d.Minor), Mode: 0o666}
		if d.FileMode != nil {
			dev.Mode = uint32(*d.FileMode) & 0o7777
		}
		if d.UID != nil {
			dev.UID = *d.UID
		}
		if d.GID != nil {
			dev.GID = *d.GID
		}
		p.Devices = append(p.Devices, dev)
	}
	for i, m := range l.MaskedPaths {
		if !path.IsAbs(m) {
			return fieldErr(fmt.Sprintf("linux.maskedPaths[%d]", i), "%q must be an absolute path", m)
		}
	}
	for i, m := range l.ReadonlyPaths {
		if !path.IsAbs(m) {
			return fieldErr(fmt.Sprintf("linux.readonlyPaths[%d]", i), "%q must be an absolute path", m)
		}
	}
	p.Masked, p.Readonly = slices.Clone(l.MaskedPaths), slices.Clone(l.ReadonlyPaths)
	if l.RootfsPropagation != "" {
		prop, ok := propagations[l.RootfsPropagation]
		if !ok {
			return fieldErr("linux.rootfsPropagation", "unknown value %q", l.RootfsPropagation)
		}
		p.Propagation = prop
		if prop&(unix.MS_SHARED|unix.MS_UNBINDABLE) != 0 {
			// Mounts are made with "/" a slave (an unbindable "/" refuses the root's own bind), and the root gets
			// the asked propagation once they are in place.
			p.Propagation, p.PropagationAfter = unix.MS_SLAVE|unix.MS_REC, prop
		}
	}
	if l.MountLabel != "" {
		return fieldErr("linux.mountLabel", "SELinux is not supported by caisson-oci (this host does not enforce it)")
	}
	if l.IntelRdt != nil {
		return fieldErr("linux.intelRdt", "not supported by caisson-oci")
	}
	if l.MemoryPolicy != nil {
		return fieldErr("linux.memoryPolicy", "not supported by caisson-oci")
	}
	if len(l.NetDevices) > 0 {
		return fieldErr("linux.netDevices", "not supported by caisson-oci")
	}
	if pe := l.Personality; pe != nil {
		switch pe.Domain {
		case specs.PerLinux:
			p.Personality = 0 // PER_LINUX
		case specs.PerLinux32:
			p.Personality = 8 // PER_LINUX32
		default:
			return fieldErr("linux.personality.domain", "unknown domain %q (want LINUX or LINUX32)", pe.Domain)
		}
		if len(pe.Flags) > 0 {
			return fieldErr("linux.personality.flags", "personality flags are not supported")
		}
	}
	return nil
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
