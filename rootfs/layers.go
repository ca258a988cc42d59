package rootfs

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strings"
)

// The layout of a --persist directory. Each overlaid mount has its own upper and work directory, named by
// LayerName of its mount point (the root is "%2F", /home is "%2Fhome").
const (
	PersistUpper = "upper"                // DIR/upper/<layer name>: the changes
	PersistWork  = "work"                 // DIR/work/<layer name>: overlayfs's work directories, reset at each start
	PersistLock  = "lock"                 // DIR/lock: flock held by the sandbox's init for its whole life
	PersistMeta  = "caisson-persist.json" // DIR/caisson-persist.json: what the layers sit on (PersistInfo)
)

// PersistInfo is the content of DIR/caisson-persist.json: which root the upper layers belong to. A later run must
// use the same root (the upper layers of the host view make no sense over an image, and the other way round).
type PersistInfo struct {
	Version int `json:"version"`
	// Lower is "/" for the host view, or the absolute host path of the --rootfs directory.
	Lower string `json:"lower"`
	// Overlay is the driver that made the upper layers: "kernel" (also when absent: the first layout) or
	// "fuse-overlayfs" (one upper layer for the whole tree, its own opaque-directory xattr). A directory keeps its
	// driver: the two do not read each other's layers completely.
	Overlay string `json:"overlay,omitempty"`
}

// driver returns the overlay driver of the layers.
func (pi PersistInfo) driver() string {
	if pi.Overlay == "" {
		return DriverKernel
	}
	return pi.Overlay
}

// ParsePersistInfo decodes DIR/caisson-persist.json.
func ParsePersistInfo(b []byte) (PersistInfo, error) {
	var pi PersistInfo
	if err := json.Unmarshal(b, &pi); err != nil {
		return pi, fmt.Errorf("%s: %w", PersistMeta, err)
	}
	if pi.Version != 1 || !path.IsAbs(pi.Lower) {
		return pi, fmt.Errorf("%s: unsupported version %d or lower %q", PersistMeta, pi.Version, pi.Lower)
	}
	if pi.Overlay != "" && pi.Overlay != DriverKernel && pi.Overlay != DriverFuse {
		return pi, fmt.Errorf("%s: unknown overlay driver %q", PersistMeta, pi.Overlay)
	}
	return pi, nil
}

// LayerName is the file name of a mount point's upper and work directories: the mount point with '%' and '/'
// (and anything else unsafe in a path segment) percent-escaped, so that every mount point has its own name and
// the name gives the mount point back.
func LayerName(mountpoint string) string {
	return url.PathEscape(path.Clean("/" + mountpoint))
}

// LayerMountpoint is the inverse of LayerName.
func LayerMountpoint(name string) (string, error) {
	mp, err := url.PathUnescape(name)
	if err != nil || !path.IsAbs(mp) || path.Clean(mp) != mp || strings.ContainsRune(name, '/') {
		return "", fmt.Errorf("%q is not a layer name", name)
	}
	return mp, nil
}

// EscapeOverlayPath escapes a path for overlayfs's legacy "lowerdir=", "upperdir=" and "workdir=" options, where
// ':' separates lower layers, ',' separates options and '\' escapes either. Kernels from 6.8 take each layer
// whole ("lowerdir+" and friends, or a file descriptor from 6.13) and need no escaping: the fallback only.
func EscapeOverlayPath(p string) string {
	return strings.NewReplacer(`\`, `\\`, ":", `\:`, ",", `\,`).Replace(p)
}

// pseudoFS are file systems that are never overlaid: their contents are the kernel's, they are mounted afresh
// inside the sandbox or kept read-only.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "cgroup": true, "cgroup2": true, "devtmpfs": true, "devpts": true, "mqueue": true,
	"securityfs": true, "debugfs": true, "tracefs": true, "bpf": true, "fusectl": true, "configfs": true,
	"pstore": true, "hugetlbfs": true, "binfmt_misc": true, "autofs": true, "efivarfs": true, "nsfs": true,
	"rpc_pipefs": true, "selinuxfs": true,
}

// coveredDirs are the directories the sandbox mounts its own file systems on; host mounts below them are kept
// read-only rather than overlaid.
var coveredDirs = []string{"/proc", "/sys", "/dev", "/run", "/tmp"}

// CoveredDirs returns the directories the sandbox mounts its own file systems on (the lower tree's are not seen).
func CoveredDirs() []string { return append([]string(nil), coveredDirs...) }

// Overlayable reports whether the mount at mountpoint (inside the root) with file system type fstype gets an
// overlay, or is kept read-only as it is.
func Overlayable(mountpoint, fstype string) bool {
	if pseudoFS[fstype] || strings.HasPrefix(fstype, "fuse") {
		return false
	}
	for _, d := range coveredDirs {
		if mountpoint == d || strings.HasPrefix(mountpoint, d+"/") {
			return false
		}
	}
	return true
}
