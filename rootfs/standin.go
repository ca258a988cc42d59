package rootfs

import (
	"fmt"
	"path"
	"strings"
)

// Stand-ins: what --overlay (with fuse-overlayfs) shows of the lower tree's files and directories the caller
// cannot read.
//
// fuse-overlayfs runs as the caller, so it can neither read such a file nor list such a directory, and therefore
// cannot copy it up: root inside would see /var/lib/apt/lists/lock as root's and writable, and then fail to open
// it. Instead the sandbox sees, for each of them, a stand-in: an empty file, or an empty directory, with the
// entry's name, permission bits and times, owned by root (or by the id the entry's owner maps to), writable after
// copy-up like any root-owned file. The sandbox gains no read access: a stand-in holds nothing of the entry, and
// its name, mode, owner and times are what `ls -l` shows the caller on the host. The caller's parent process finds
// the entries (package standin, with a cache) and lists them in Spec.StandIns; init builds them as one more lower
// layer of fuse-overlayfs, above the host's tree.

// The kinds of StandIn.
const (
	// StandInFile is a regular file the caller cannot read: an empty file.
	StandInFile = "file"
	// StandInDir is a directory the caller cannot list or cannot enter: an empty directory that hides the lower
	// one (opaque). fuse-overlayfs reads a directory whole, so even the names of one the caller may enter but
	// not list would not resolve through it.
	StandInDir = "dir"
	// StandInParent is a directory on the way to stand-ins: merged with the lower tree's, its attributes kept.
	StandInParent = "parent"
)

// StandIn is one entry of the stand-in layer.
type StandIn struct {
	// Path is the entry's absolute path in the root (clean, never "/").
	Path string `json:"p"`
	// Kind is one of StandInFile, StandInDir or StandInParent.
	Kind string `json:"k"`
	// Mode holds the permission bits (07777) of the entry.
	Mode uint32 `json:"m"`
	// UID and GID are the entry's owner on the host; an id the sandbox does not map shows as root.
	UID uint32 `json:"u"`
	GID uint32 `json:"g"`
	// Atime and Mtime are the entry's times, in nanoseconds since the epoch.
	Atime int64 `json:"a"`
	Mtime int64 `json:"t"`
}

// CheckStandIn validates a stand-in received by init: a known kind and a clean absolute path below the root.
func CheckStandIn(s StandIn) error {
	switch s.Kind {
	case StandInFile, StandInDir, StandInParent:
	default:
		return fmt.Errorf("stand-in %q: unknown kind %q", s.Path, s.Kind)
	}
	if !path.IsAbs(s.Path) || path.Clean(s.Path) != s.Path || s.Path == "/" || strings.ContainsRune(s.Path, 0) {
		return fmt.Errorf("stand-in %q: not a clean absolute path below the root", s.Path)
	}
	if s.Mode&^0o7777 != 0 {
		return fmt.Errorf("stand-in %q: mode %#o has more than permission bits", s.Path, s.Mode)
	}
	return nil
}
