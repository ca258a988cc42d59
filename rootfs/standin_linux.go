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
	uids, gids := readIDMap("/proc/self/uid_map"), readIDMap("/proc/self/gid_map")
	var dirs []StandIn
	for _, s := range ins {
		rel := strings.TrimPrefix(s.Path, "/")
		if err := mkdirAllBeneath(top, path.Dir(rel)); err != nil {
			return "", standInError(s, err)
		}
		switch s.Kind {
		case StandInFile:
			fd, err := openBeneath(top, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL)
			if err != nil {
				return "", standInError(s, err)
			}
			err = setAttrs(fd, s, uids, gids)
			unix.Close(fd)
			if err == nil {
				err = setTimes(top, s)
			}
			if err != nil {
				return "", standInError(s, err)
			}
		default:
			if err := unix.Mkdirat(top, rel, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return "", standInError(s, err)
			}
			if s.Kind == StandInDir {
				fd, err := openBeneath(top, rel+"/"+opaqueMarker, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL)
				if err != nil {
					return "", standInError(s, err)
				}
				unix.Close(fd)
			}
			dirs = append(dirs, s)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		s := dirs[i]
		fd, err := openBeneath(top, strings.TrimPrefix(s.Path, "/"), unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return "", standInError(s, err)
		}
		err = setAttrs(fd, s, uids, gids)
		unix.Close(fd)
		if err == nil {
			err = setTimes(top, s)
		}
		if err != nil {
			return "", standInError(s, err)
		}
	}
	return standInDir, nil
}

func standInError(s StandIn, err error) error {
	return &MountError{Op: "create stand-in", Target: s.Path, Err: err}
}

// mkdirAllBeneath creates the directory rel (relative, clean) below top and its missing parents, mode 0755.
func mkdirAllBeneath(top int, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	if err := mkdirAllBeneath(top, path.Dir(rel)); err != nil {
		return err
	}
	fd, err := openBeneath(top, path.Dir(rel), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Mkdirat(fd, path.Base(rel), 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// setAttrs gives the open stand-in fd its owner (mapped into this user namespace; root when unmapped) and mode.
func setAttrs(fd int, s StandIn, uids, gids []idRange) error {
	if err := unix.Fchown(fd, int(toInside(uids, s.UID)), int(toInside(gids, s.GID))); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, s.Mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// setTimes sets the stand-in's times by its path below top (the layer holds no symlink: init made every entry).
func setTimes(top int, s StandIn) error {
	ts := []unix.Timespec{unix.NsecToTimespec(s.Atime), unix.NsecToTimespec(s.Mtime)}
	if err := unix.UtimesNanoAt(top, strings.TrimPrefix(s.Path, "/"), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// toInside translates a host id through a uid_map or gid_map; an id outside the map becomes 0 (root), as
// fuse-overlayfs shows every unmapped owner.
func toInside(m []idRange, host uint32) uint64 {
	for _, r := range m {
		if uint64(host) >= r.Out && uint64(host) < r.Out+r.N {
			return r.In + uint64(host) - r.Out
		}
	}
	return 0
}
