// Package rootfs builds a sandbox's root filesystem inside a fresh mount namespace.
//
// The plan is data (bubblewrap's SetupOp idea): the parent turns flags into a Spec, a list of Op steps plus a few
// switches, sends it to the sandbox init, and init calls Setup, which applies the base layout (read-only host view,
// fresh /proc with masked kernel files, a minimal /dev, private /tmp and /run) and then the Ops, and finally
// pivots into the new root. Every destination is resolved inside the new root with openat2(RESOLVE_IN_ROOT), so a
// symlink in the tree can never make setup mount or create anything outside it.
//
// Setup uses the kernel's new mount API (open_tree, mount_setattr, fsopen, move_mount): Linux 5.12 or newer.
package rootfs

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Kind names one kind of mount step.
type Kind string

// The kinds of Op.
const (
	// KindBind bind-mounts Src (a host path, recursively) at Dst, read-write.
	KindBind Kind = "bind"
	// KindROBind bind-mounts Src at Dst, recursively read-only.
	KindROBind Kind = "ro-bind"
	// KindTmpfs mounts an empty tmpfs at Dst (Size bytes at most when Size > 0).
	KindTmpfs Kind = "tmpfs"
	// KindFile places a read-only file holding Data at Dst (used for /etc/resolv.conf, /etc/hosts, /etc/hostname).
	KindFile Kind = "file"
)

// Op is one mount step applied after the base layout.
type Op struct {
	Kind Kind   `json:"kind"`
	Src  string `json:"src,omitempty"`
	Dst  string `json:"dst"`
	Data []byte `json:"data,omitempty"`
	Size int64  `json:"size,omitempty"`
	// Optional steps are skipped silently when their source is missing (used for defaults, never for user flags).
	Optional bool `json:"optional,omitempty"`
}

// Spec is everything Setup needs. It is built by the parent and sent to init as JSON.
type Spec struct {
	// Ops are applied in order after the base layout.
	Ops []Op `json:"ops,omitempty"`
	// NewPID is true when the sandbox has its own PID namespace (a fresh /proc is mounted); otherwise the host's
	// /proc stays visible read-only.
	NewPID bool `json:"new_pid"`
	// NewNet is true when the sandbox has its own network namespace (a fresh sysfs is mounted).
	NewNet bool `json:"new_net"`
	// NewIPC is true when the sandbox has its own IPC namespace (a fresh mqueue is mounted).
	NewIPC bool `json:"new_ipc"`
	// NewCgroup is true when the sandbox has its own cgroup namespace (a fresh read-only cgroup2 is mounted).
	NewCgroup bool `json:"new_cgroup"`
	// TTYGID is the group id, inside, that owns new ptys (5 when the tty group is mapped), or -1 to leave it out.
	TTYGID int `json:"tty_gid"`
	// Root is the host directory that becomes the sandbox's root (--rootfs), or "" for the read-only view of the
	// host's own tree. It is mounted nosuid and nodev, read-write unless ReadOnly.
	Root string `json:"root,omitempty"`
	// ReadOnly makes Root read-only (--read-only).
	ReadOnly bool `json:"read_only,omitempty"`
	// Overlay makes the root (the host view or Root) writable through an overlay (--overlay): the kernel's
	// overlayfs, one overlay per visible mount, each with its own upper layer; or, where the lower tree's owner
	// is not mapped (the host view), one fuse-overlayfs over the whole tree when it is installed.
	Overlay bool `json:"overlay,omitempty"`
	// OverlaySize bounds the tmpfs holding the upper layers, in bytes (0: the tmpfs default, half the RAM).
	OverlaySize int64 `json:"overlay_size,omitempty"`
	// Persist is the host directory holding the upper layers instead of a tmpfs (--persist); it implies Overlay.
	Persist string `json:"persist,omitempty"`
	// FuseOverlayfs is the host path of the fuse-overlayfs executable ("" when it is not installed). Setup uses it
	// where the kernel's overlayfs cannot copy files up (the host view: the host's root is not mapped).
	FuseOverlayfs string `json:"fuse_overlayfs,omitempty"`
	// OverlayDriver forces a driver, DriverKernel or DriverFuse; "" chooses per run (CAISSON_OVERLAY_DRIVER).
	OverlayDriver string `json:"overlay_driver,omitempty"`
	// StandIns are the lower tree's entries the caller cannot read, and the directories leading to them: with
	// fuse-overlayfs the sandbox sees each as an empty file or directory (StandIn). The parent finds them.
	StandIns []StandIn `json:"stand_ins,omitempty"`
}

// The overlay drivers --overlay can use.
const (
	// DriverKernel is the kernel's overlayfs with userxattr: fast, but a file whose owner is not mapped in the
	// user namespace (the host's root, for the host view) cannot be copied up, so it stays read-only.
	DriverKernel = "kernel"
	// DriverFuse is fuse-overlayfs, run by init inside the sandbox: ids the user namespace cannot see are shown
	// as root, and root-owned lower files are writable after copy-up.
	DriverFuse = "fuse-overlayfs"
)

// DriverEnv is the environment variable of the caller that forces a driver ("kernel" or "fuse-overlayfs").
const DriverEnv = "CAISSON_OVERLAY_DRIVER"

// FindFuseOverlayfs returns the absolute path of the fuse-overlayfs executable in pathEnv (a PATH value; when it
// is empty, /usr/local/bin:/usr/bin:/bin), or "".
func FindFuseOverlayfs(pathEnv string) string {
	if pathEnv == "" {
		pathEnv = "/usr/local/bin:/usr/bin:/bin"
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, DriverFuse)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// MaskedPaths are kernel files and directories hidden from the sandbox (runc's list): files are covered by
// /dev/null, directories by an empty read-only tmpfs.
var MaskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// ReadOnlyPaths are /proc entries made read-only inside the sandbox.
var ReadOnlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// Devices are the host device nodes bound into the sandbox's /dev, with their expected major:minor numbers.
var Devices = []struct {
	Name         string
	Major, Minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// ParseBind splits a --bind/--ro-bind value "SRC[:DST]". A literal ':' or '\' in a path is written '\:' or '\\'.
// Both paths must be absolute after the split (the caller makes SRC absolute first when it is relative); DST
// defaults to SRC.
func ParseBind(s string) (src, dst string, err error) {
	parts, err := splitEscaped(s, ':')
	if err != nil {
		return "", "", err
	}
	switch len(parts) {
	case 1:
		src, dst = parts[0], parts[0]
	case 2:
		src, dst = parts[0], parts[1]
	default:
		return "", "", fmt.Errorf("%q has more than one unescaped ':' (write a literal colon as \\:)", s)
	}
	if src == "" || dst == "" {
		return "", "", fmt.Errorf("%q: empty path", s)
	}
	if !path.IsAbs(dst) {
		return "", "", fmt.Errorf("%q: destination %q must be an absolute path", s, dst)
	}
	return src, path.Clean(dst), nil
}

// ParseTmpfs parses a --tmpfs value "DST[:size=N]" where N is bytes with an optional k, m or g suffix.
func ParseTmpfs(s string) (dst string, size int64, err error) {
	parts, err := splitEscaped(s, ':')
	if err != nil {
		return "", 0, err
	}
	if len(parts) > 2 || parts[0] == "" {
		return "", 0, fmt.Errorf("%q: want DST[:size=N]", s)
	}
	dst = parts[0]
	if !path.IsAbs(dst) {
		return "", 0, fmt.Errorf("%q: destination must be an absolute path", s)
	}
	if len(parts) == 2 {
		v, ok := strings.CutPrefix(parts[1], "size=")
		if !ok {
			return "", 0, fmt.Errorf("%q: unknown option %q (want size=N)", s, parts[1])
		}
		if size, err = ParseSize(v); err != nil {
			return "", 0, fmt.Errorf("%q: %w", s, err)
		}
	}
	return path.Clean(dst), size, nil
}

// ParseSize parses a byte count with an optional k, m or g suffix (powers of 1024). Zero and negative sizes,
// trailing garbage and values that overflow int64 are rejected.
func ParseSize(v string) (int64, error) {
	if v == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := int64(1)
	switch v[len(v)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	}
	digits := v
	if mult != 1 {
		digits = v[:len(v)-1]
	}
	if digits == "" {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid size %q", v)
		}
		if n > (1<<63-1)/10 {
			return 0, fmt.Errorf("size %q is too large", v)
		}
		n = n*10 + int64(c-'0')
	}
	if n == 0 {
		return 0, fmt.Errorf("size %q must be positive", v)
	}
	if n > (1<<63-1)/mult {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return n * mult, nil
}

// EscapeBind escapes a path for use as one side of a --bind or --ro-bind value: '\\' and ':' get a backslash.
func EscapeBind(p string) string {
	return strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(p)
}

// splitEscaped splits s on sep, honouring backslash escapes of sep and of the backslash itself.
func splitEscaped(s string, sep byte) ([]string, error) {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) || (s[i+1] != sep && s[i+1] != '\\') {
				return nil, fmt.Errorf("%q: a backslash must escape %q or another backslash", s, string(sep))
			}
			cur.WriteByte(s[i+1])
			i++
		case c == sep:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String()), nil
}
