package rootfs

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// standInDir holds the stand-in layer (see StandIn) on init's tmpfs, in init's mount namespace.
const standInDir = baseDir + "/standins"

// opaqueMarker is the file that makes a directory of a lower layer opaque for fuse-overlayfs (its fallback when
// the layer's file system has no user xattrs): the layers below it are not looked into.
const opaqueMarker = ".wh..wh..opq"

// buildStandIns creates the stand-in layer of Spec.StandIns at standInDir and returns its path, or "" when there
// are none. Entries are created parents first, each owned by the id its host owner maps to in this user namespace
// (root when unmapped), with its mode and times; directories get theirs once their children exist.
//
// The layer is a new directory of init's private tmpfs, which nothing else can reach yet, and init creates only
// directories and empty files in it (every path checked clean by CheckStandIn): paths are resolved below it as
// they are, without one descriptor per level, to keep this cheap (it runs at every start).
func (b *builder) buildStandIns() (string, error) {
	ins := append([]StandIn(nil), b.spec.StandIns...)
	if len(ins) == 0 {
		return "", nil
	}
	for _, s := range ins {
		if err := CheckStandIn(s); err != nil {
			return "", fmt.Errorf("rootfs: %w", err)
		}
	}
	// A path sorts after every one of its ancestors.
	sort.Slice(ins, func(i, j int) bool { return ins[i].Path < ins[j].Path })
	if err := unix.Mkdir(standInDir, 0o755); err != nil {
		return "", fmt.Errorf("rootfs: stand-in layer: %w", err)
	}
	top, err := unix.Open(standInDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("rootfs: stand-in layer: %w", err)
	}
	defer unix.Close(top)
	l := &standInLayer{top: top, uids: readIDMap("/proc/self/uid_map"), gids: readIDMap("/proc/self/gid_map"),
		dirs: map[string]bool{".": true}, chmod: map[string]bool{}}
	// Entries are created with their modes (no chmod each): no umask meanwhile.
	defer unix.Umask(unix.Umask(0))
	var dirs []StandIn
	for _, s := range ins {
		rel := strings.TrimPrefix(s.Path, "/")
		if err := l.parents(rel); err != nil {
			return "", standInError(s, err)
		}
		if s.Kind == StandInFile {
			if err := l.file(rel, s); err != nil {
				return "", standInError(s, err)
			}
			continue
		}
		if err := l.dir(rel, s); err != nil {
			return "", standInError(s, err)
		}
		dirs = append(dirs, s)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := l.attrs(strings.TrimPrefix(dirs[i].Path, "/"), dirs[i]); err != nil {
			return "", standInError(dirs[i], err)
		}
	}
	return standInDir, nil
}

func standInError(s StandIn, err error) error {
	return &MountError{Op: "create stand-in", Target: s.Path, Err: err}
}

// standInLayer creates the entries of the stand-in layer below top.
type standInLayer struct {
	top        int
	uids, gids []idRange
	dirs       map[string]bool // directories that exist (relative paths)
	chmod      map[string]bool // directories whose mode is still to be set
}

// parents creates the missing directories above rel (mode 0755, root's: the parent process lists every
// directory leading to a stand-in with its attributes, so this only happens for a list that lacks one).
func (l *standInLayer) parents(rel string) error {
	d := path.Dir(rel)
	if l.dirs[d] {
		return nil
	}
	if err := l.parents(d); err != nil {
		return err
	}
	if err := unix.Mkdirat(l.top, d, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	l.dirs[d] = true
	return nil
}

// file creates the empty file rel with s's owner, mode and times.
func (l *standInLayer) file(rel string, s StandIn) error {
	fd, err := unix.Openat(l.top, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, s.Mode&0o777)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return l.attrs(rel, s)
}

// dir creates the directory rel with s's mode (its owner and times come once its children exist), opaque when it
// hides the lower one.
func (l *standInLayer) dir(rel string, s StandIn) error {
	if err := unix.Mkdirat(l.top, rel, s.Mode&0o1777); errors.Is(err, unix.EEXIST) {
		l.chmod[rel] = true // made by parents
	} else if err != nil {
		return err
	}
	opaque := s.Kind == StandInDir
	l.dirs[rel] = true
	if opaque {
		fd, err := unix.Openat(l.top, rel+"/"+opaqueMarker, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		unix.Close(fd)
	}
	return nil
}

// attrs gives rel its owner (mapped into this user namespace; root, which created it, when unmapped), the mode
// bits its creation could not set, and its times.
func (l *standInLayer) attrs(rel string, s StandIn) error {
	uid, _ := toInside(l.uids, uint64(s.UID))
	gid, _ := toInside(l.gids, uint64(s.GID))
	if uid != 0 || gid != 0 {
		if err := unix.Fchownat(l.top, rel, int(uid), int(gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	// The mode was set at creation, but for set-id bits and the directories parents made.
	if s.Mode&0o6000 != 0 || l.chmod[rel] {
		if err := unix.Fchmodat(l.top, rel, s.Mode, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(s.Atime), unix.NsecToTimespec(s.Mtime)}
	if err := unix.UtimesNanoAt(l.top, rel, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// toInside translates a host id through a uid_map or gid_map; an id outside the map (ok false) becomes 0 (root),
// as fuse-overlayfs shows every unmapped owner.
func toInside(m []idRange, host uint64) (id uint64, ok bool) {
	for _, r := range m {
		if host >= r.Out && host < r.Out+r.N {
			return r.In + host - r.Out, true
		}
	}
	return 0, false
}
