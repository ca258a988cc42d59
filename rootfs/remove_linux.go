package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// ErrPersistInUse is the error of a --persist directory whose lock a running sandbox holds.
var ErrPersistInUse = errors.New("in use by a running sandbox (it holds the --persist lock; see caisson ps)")

// errMountPoint is the error of a directory below a tree being removed that is another mount.
var errMountPoint = errors.New("a mount point: not entered (the removal stays on one file system)")

// errKept says that an entry below could not be removed and was reported already: the directories above it stay.
var errKept = errors.New("entries kept")

// tryLockPersist takes the --persist lock open at fd without waiting: ErrPersistInUse when another holds it.
func tryLockPersist(fd int) error {
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return ErrPersistInUse
		}
		return fmt.Errorf("lock: %w", err)
	}
}

// isPersistDir reports whether the directory open at dirfd is a --persist directory: a regular lock file, next to
// the layers or their metadata. The look-ups trigger no automount (rm-tree looks into /home and the like).
func isPersistDir(dirfd int) bool {
	var st unix.Stat_t
	const flags = unix.AT_SYMLINK_NOFOLLOW | unix.AT_NO_AUTOMOUNT
	if unix.Fstatat(dirfd, PersistLock, &st, flags) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	for _, n := range []string{PersistMeta, PersistUpper} {
		if unix.Fstatat(dirfd, n, &st, flags) == nil {
			return true
		}
	}
	return false
}

// LockPersist takes, without waiting, the lock of the --persist directory open at dirfd (any descriptor of it, an
// O_PATH one included), the lock a sandbox takes when it starts on the directory and holds until it ends: while
// the returned descriptor stays open, no sandbox can start on the directory. It returns -1 and no error when dirfd
// is not a --persist directory, and ErrPersistInUse when a running sandbox holds the lock.
func LockPersist(dirfd int) (int, error) {
	if !isPersistDir(dirfd) {
		return -1, nil
	}
	fd, err := openBeneath(dirfd, PersistLock, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", PersistLock, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, nil // replaced since it was looked at: not a lock
	}
	if err := tryLockPersist(fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// remover removes directory trees below a directory descriptor, never following a symlink. The zero value stops
// at the first entry it cannot remove and enters every directory; RemoveTree's carries on, stays on one file
// system and locks the --persist directories it meets.
type remover struct {
	keepGoing bool   // report an entry that cannot be removed and go on with the others
	dev       uint64 // when not 0: the tree's device; a directory elsewhere, or a mount point, is not entered
	lock      bool   // take the lock of every --persist directory entered, kept in held
	errs      []error
	held      []int
}

// fail reports err: returned as is when the removal stops at the first error, else recorded and replaced by
// errKept.
func (r *remover) fail(err error) error {
	if !r.keepGoing {
		return err
	}
	r.errs = append(r.errs, err)
	return errKept
}

// removeAt removes name in dirfd (named p in errors) and, when it is a directory, everything below it.
func (r *remover) removeAt(dirfd int, name, p string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return r.fail(&os.PathError{Op: "remove", Path: p, Err: err})
	}
	sub, oerr := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if oerr != nil {
		if errors.Is(oerr, unix.ENOTDIR) || errors.Is(oerr, unix.ELOOP) {
			return r.fail(&os.PathError{Op: "remove", Path: p, Err: err}) // not a directory: the unlink's error stands
		}
		return r.fail(&os.PathError{Op: "open", Path: p, Err: oerr})
	}
	defer unix.Close(sub)
	if err := r.enter(sub, p); err != nil {
		return r.fail(err)
	}
	if err := r.removeChildren(sub, p); err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return r.fail(&os.PathError{Op: "remove", Path: p, Err: err})
	}
	return nil
}

// enter checks the directory open at dirfd (named p) before it is emptied: on the tree's file system, and locked
// when it is a --persist directory.
func (r *remover) enter(dirfd int, p string) error {
	if r.dev != 0 {
		var stx unix.Statx_t
		if err := unix.Statx(dirfd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
			return &os.PathError{Op: "stat", Path: p, Err: err}
		}
		mountRoot := stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
		if mountRoot || unix.Mkdev(stx.Dev_major, stx.Dev_minor) != r.dev {
			return &os.PathError{Op: "remove", Path: p, Err: errMountPoint}
		}
	}
	if r.lock {
		fd, err := LockPersist(dirfd)
		if err != nil {
			return &os.PathError{Op: "remove", Path: p, Err: err}
		}
		if fd >= 0 {
			r.held = append(r.held, fd)
		}
	}
	return nil
}

// removeChildren empties the directory open at dirfd (named p). A --persist directory's lock file goes last, so
// that no sandbox can start on the directory while its layers are being removed.
func (r *remover) removeChildren(dirfd int, p string) error {
	names, err := readDirNames(dirfd)
	if err != nil {
		return r.fail(&os.PathError{Op: "read", Path: p, Err: err})
	}
	for i, n := range names {
		if n == PersistLock {
			names = append(append(names[:i:i], names[i+1:]...), n)
			break
		}
	}
	kept := false
	for _, n := range names {
		if err := r.removeAt(dirfd, n, path.Join(p, n)); err != nil {
			if !errors.Is(err, errKept) {
				return err
			}
			kept = true
		}
	}
	if kept {
		return errKept
	}
	return nil
}

// RemoveTree removes the directory dir (a descriptor of it; O_PATH is enough) and everything below it, for
// `caisson rm-tree`. parent is a descriptor of the directory that holds dir under the last element of p, the
// path errors name. It never follows a symlink and never leaves dir's file system (a mount point below is
// reported, not entered); it takes the lock of every --persist directory it meets below dir before emptying it
// (one a running sandbox holds is reported and kept) and holds them until it returns; it removes each directory's
// lock file last. It goes on past an entry it cannot remove, and returns one error for each (the directories above
// such an entry stay); nil when the whole tree is gone. The caller takes dir's own lock, if any, beforehand.
func RemoveTree(parent, dir int, p string) []error {
	name := path.Base(p)
	top, err := openBeneath(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return []error{&os.PathError{Op: "open", Path: p, Err: err}}
	}
	defer unix.Close(top)
	var st unix.Stat_t
	if err := unix.Fstat(top, &st); err != nil {
		return []error{&os.PathError{Op: "stat", Path: p, Err: err}}
	}
	// The directory is removed by its name in parent: only while that name still is this directory.
	same := func() error {
		var cur unix.Stat_t
		if err := unix.Fstatat(parent, name, &cur, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "remove", Path: p, Err: err}
		}
		if cur.Dev != st.Dev || cur.Ino != st.Ino {
			return &os.PathError{Op: "remove", Path: p, Err: errors.New("moved or replaced while being removed")}
		}
		return nil
	}
	if err := same(); err != nil {
		return []error{err}
	}
	r := &remover{keepGoing: true, dev: st.Dev, lock: true}
	defer func() {
		for _, fd := range r.held {
			unix.Close(fd)
		}
	}()
	if err := r.removeChildren(top, p); err != nil && !errors.Is(err, errKept) {
		r.errs = append(r.errs, err)
	}
	if len(r.errs) > 0 {
		return r.errs
	}
	if err := same(); err != nil {
		return []error{err}
	}
	if err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil {
		return []error{&os.PathError{Op: "remove", Path: p, Err: err}}
	}
	return nil
}
