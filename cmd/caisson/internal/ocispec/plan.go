// Package ocispec turns an OCI bundle's config.json into the plan caisson-oci carries out: it reads and validates
// the spec field by field (an error names the field and, where one is known, the fix), and translates what it asks
// for into caisson's own terms — namespaces to create or join, rootfs.Mount steps, devices, a compiled seccomp
// program, capability sets and resource limits. It is pure: nothing here starts a process or changes the host, so
// every rule is unit-tested for any user.
package ocispec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/rootfs"
	"golang.org/x/sys/unix"
)

// Plan is what the container's init (package ociinit) needs to build the container and run its process. The
// runtime's command (package oci) makes it with Load and sends it to init over the stage's socket.
type Plan struct {
	ID     string
	Bundle string // absolute
	// Root is the absolute host path of the container's root (root.path); RootReadonly is root.readonly.
	Root         string
	RootReadonly bool
	// NoPivot is create --no-pivot: move the root over "/" and chroot instead of pivot_root.
	NoPivot bool

	NS Namespaces

	// Propagation is the propagation set on "/" before the mounts (MS_* with MS_REC; 0: rslave). PropagationAfter
	// is set on the root once the mounts are in place (rootfsPropagation shared), as runc does.
	Propagation, PropagationAfter uintptr
	Mounts                        []rootfs.Mount
	// Cgroup holds what a mount of type cgroup needs: the container's groups (see CgroupMount).
	Cgroup CgroupView
	// Devices are linux.devices; DefaultDevices says that /dev is a file system of the container's own, where
	// the default devices and links are made.
	Devices        []rootfs.Device
	DefaultDevices bool
	Masked         []string
	Readonly       []string

	Hostname, Domainname string
	// Sysctl are linux.sysctl, sorted by key.
	Sysctl [][2]string
	// Personality is the execution domain (PER_LINUX, PER_LINUX32), -1 for none.
	Personality int

	Process Process
	Hooks   Hooks
}

// Namespaces says which namespaces the container gets.
type Namespaces struct {
	// New are the CLONE_NEW* flags of the namespaces created for the container.
	New uintptr
	// Join are the namespaces entered by path, in config order.
	Join []NSPath
	// Own lists every namespace type the container has of its own (new or joined), by CLONE_NEW* flag.
	Own uintptr
	// UIDMappings and GIDMappings are the maps of a new user namespace.
	UIDMappings, GIDMappings []specs.LinuxIDMapping
	// TimeOffsets are the offsets of a new time namespace.
	TimeOffsets map[string]specs.LinuxTimeOffset
}

// NSPath is a namespace joined by path.
type NSPath struct {
	Type int    // CLONE_NEW*
	Name string // its config name ("network")
	Path string
}

// Has reports whether the container has a namespace of its own of type flag (new or joined).
func (n Namespaces) Has(flag uintptr) bool { return n.Own&flag != 0 }

// Caps are the five capability sets of a process, as bit masks.
type Caps struct {
	Bounding, Effective, Inheritable, Permitted, Ambient uint64
}

// Process is the container's process (or an exec'd one).
type Process struct {
	Args []string
	Env  []string
	Cwd  string
	// UID, GID and AdditionalGids are the ids inside; Umask is the umask (0022 when nil, as runc).
	UID, GID       uint32
	AdditionalGids []uint32
	Umask          *uint32
	Terminal       bool
	ConsoleSize    *specs.Box
	Caps           Caps
	Rlimits        []config.Rlimit
	NoNewPrivs     bool
	// ApparmorProfile is applied at exec where AppArmor is enabled (Load refuses it otherwise).
	ApparmorProfile string
	// IOPriority is the ioprio_set(2) value (class << 13 | level), 0 for none.
	IOPriority int
	// Seccomp is the compiled filter (nil: none) and its flags.
	Seccomp *Filter
	// SeccompSource names the profile in errors.
	SeccompSource string
}

// Filter is a compiled seccomp program as seccomp.Install takes it.
type Filter struct {
	Insns []unix.SockFilter
	Flags uint
}

// Hooks are the hooks the container's init runs itself; the others run in the runtime's command.
type Hooks struct {
	CreateContainer []specs.Hook
	StartContainer  []specs.Hook
}

// CgroupView is the container's cgroups as a mount of type cgroup shows them.
type CgroupView struct {
	// V2 is true on a host whose /sys/fs/cgroup is cgroup2 (the unified layout).
	V2 bool
	// Paths maps each hierarchy's mount point on the host (/sys/fs/cgroup/memory, /sys/fs/cgroup/unified, ...) to
	// the container's group in it (a path relative to that mount point).
	Paths map[string]string
}
